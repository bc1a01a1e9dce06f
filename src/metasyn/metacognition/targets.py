"""Consistency-based confidence targets (after Steyvers et al. 2025, arXiv 2510.05126).

A question is sampled N times (Steyvers et al.: at temperature 1); the share of samples that agree with the
model's answer is its consistency, a behavioural confidence signal. Questions are binned by consistency; a bin's
empirical accuracy (of the model's answers) plus a little uniform noise becomes the target confidence the model
is trained to state.

The model's answer here is its greedy answer, where Steyvers et al. take the modal sample. For the large models
they study the two nearly always coincide; for a 135M model at T=1 they do not: the modal sample was right for
16% of the questions against 38% greedy (255 questions, 2026-12-02), and fine-tuning on modal answers taught
wrong ones (accuracy 0.43 to 0.09 in a demo run). The greedy answer is also the one calibration grades, so a
target states the probability that the answer the model will actually give is right.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from metasyn.metacognition.binning import equal_width_bin

logger = logging.getLogger(__name__)


def question_consistency(samples: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per question: the reference (greedy) answer, its correctness, consistency (the share of all samples equal
    to it), and how many samples were correct (the accuracy over repeated trials that the judgment classes read).

    ``samples`` has one row per sample with ``question_id``, ``sample_index``, ``answer`` (None when
    unparseable) and ``correct``; ``reference`` one row per question with ``question_id``, ``answer``,
    ``answer_text`` (the answer as the model wrote it: what a training completion states, kept as
    ``reference_text``) and ``correct``. Unparseable samples count in the denominator: failing to answer is
    inconsistency too. A question without a parseable reference answer has consistency 0 and nothing to train on.
    """
    by_question = reference.set_index("question_id")
    missing = sorted(set(samples["question_id"]) - set(by_question.index))
    if missing:
        raise ValueError(
            f"{len(missing)} sampled questions have no greedy reference answer (e.g. {missing[:3]}): the reference "
            "answers come from another set of questions. Run data_prep's generate_reference_answers node again."
        )
    rows = []
    for question_id, group in samples.sort_values("sample_index").groupby("question_id", sort=True):
        answer = by_question.loc[question_id, "answer"]
        answer = None if pd.isna(answer) else answer
        agreeing = (group["answer"] == answer).sum() if answer is not None else 0
        rows.append(
            {
                "question_id": question_id,
                "n_samples": len(group),
                "n_unparsed": int(group["answer"].isna().sum()),
                "n_correct": int(group["correct"].sum()),
                "reference_answer": answer,
                "reference_text": by_question.loc[question_id, "answer_text"] if answer is not None else None,
                "consistency": agreeing / len(group),
                "reference_correct": bool(by_question.loc[question_id, "correct"]) and answer is not None,
            }
        )
    return pd.DataFrame(rows)


def bin_accuracy(consistency: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per consistency bin: edges, question count and empirical accuracy of the reference answers."""
    bins = equal_width_bin(consistency["consistency"], n_bins)
    grouped = consistency.assign(bin=bins).groupby("bin")["reference_correct"]
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
