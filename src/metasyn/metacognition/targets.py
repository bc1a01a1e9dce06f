"""Consistency-based confidence targets (Steyvers et al. 2025, arXiv 2510.05126).

A question is sampled N times; the share of samples that agree with the modal answer is the model's
consistency, a behavioural confidence signal. Questions are binned by consistency; a bin's empirical accuracy
(of the modal answers) plus a little uniform noise becomes the target confidence the model is trained to state.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd

from metasyn.metacognition.binning import equal_width_bin

logger = logging.getLogger(__name__)


def modal_answer(answers: list[str | None]) -> str | None:
    """Most frequent parsed answer; ties go to the one seen first (``Counter`` keeps insertion order)."""
    parsed = [answer for answer in answers if answer is not None]
    return Counter(parsed).most_common(1)[0][0] if parsed else None


def question_consistency(samples: pd.DataFrame) -> pd.DataFrame:
    """Per question: modal answer, consistency (share of all samples equal to it), its correctness, and how many
    samples were correct (the accuracy over repeated trials that the judgment classes read).

    ``samples`` has one row per sample with ``question_id``, ``sample_index``, ``answer`` (None when
    unparseable) and ``correct``. Unparseable samples count in the denominator: failing to answer is
    inconsistency too.
    """
    rows = []
    for question_id, group in samples.sort_values("sample_index").groupby("question_id", sort=True):
        answers = [None if pd.isna(answer) else answer for answer in group["answer"]]
        modal = modal_answer(answers)
        agreeing = group[group["answer"] == modal] if modal is not None else group.iloc[:0]
        rows.append(
            {
                "question_id": question_id,
                "n_samples": len(group),
                "n_unparsed": sum(answer is None for answer in answers),
                "n_correct": int(group["correct"].sum()),
                "modal_answer": modal,
                "consistency": len(agreeing) / len(group),
                "modal_correct": bool(agreeing["correct"].any()) if modal is not None else False,
            }
        )
    return pd.DataFrame(rows)


def bin_accuracy(consistency: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per consistency bin: edges, question count and empirical accuracy of the modal answers."""
    bins = equal_width_bin(consistency["consistency"], n_bins)
    grouped = consistency.assign(bin=bins).groupby("bin")["modal_correct"]
    table = pd.DataFrame({"bin": np.arange(n_bins)})
    table["lower"] = table["bin"] / n_bins
    table["upper"] = (table["bin"] + 1) / n_bins
    table["n_questions"] = table["bin"].map(grouped.size()).fillna(0).astype(int)
    table["accuracy"] = table["bin"].map(grouped.mean().astype(float))
    return table


def target_confidences(consistency: pd.DataFrame, bins: pd.DataFrame, noise: float, seed: int) -> pd.DataFrame:
    """Attach ``bin`` and ``target_confidence`` = bin accuracy + U(-noise, noise), clipped to [0, 1].

    A question whose bin holds no training question has no accuracy to learn: its target is NaN
    (``defined_targets`` drops it).
    """
    rng = np.random.default_rng(seed)
    bin_index = equal_width_bin(consistency["consistency"], len(bins))
    accuracy = bins.set_index("bin")["accuracy"].reindex(bin_index).to_numpy()
    jitter = rng.uniform(-noise, noise, size=len(consistency))
    return consistency.assign(bin=bin_index, target_confidence=np.clip(accuracy + jitter, 0.0, 1.0))


def defined_targets(targets: pd.DataFrame) -> pd.DataFrame:
    """The questions with a target; those in a consistency bin without training questions dropped, logged."""
    undefined = targets["target_confidence"].isna()
    if undefined.any():
        logger.warning(
            "%d of %d questions dropped: their consistency bins (%s) hold no training question, so there is no "
            "empirical accuracy to set as their target. More training questions fill more bins.",
            int(undefined.sum()),
            len(targets),
            sorted(int(b) for b in targets.loc[undefined, "bin"].unique()),
        )
    return targets[~undefined].reset_index(drop=True)


def balance_bins(targets: pd.DataFrame, max_ratio: float, seed: int) -> pd.DataFrame:
    """Subsample bins holding more than ``max_ratio`` x the median non-empty bin count."""
    counts = targets["bin"].value_counts()
    cap = max(1, int(np.ceil(max_ratio * counts.median())))
    kept = [group.sample(n=min(len(group), cap), random_state=seed) for _, group in targets.groupby("bin", sort=True)]
    return pd.concat(kept).sort_values("question_id").reset_index(drop=True)
