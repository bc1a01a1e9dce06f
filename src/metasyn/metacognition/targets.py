"""Consistency-based confidence targets (Steyvers et al. 2025, arXiv 2510.05126).

A question is sampled N times; the share of samples that agree with the modal answer is the model's
consistency, a behavioural confidence signal. Questions are binned by consistency; a bin's empirical accuracy
(of the modal answers) plus a little uniform noise becomes the target confidence the model is trained to state.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from metasyn.prompts import (
    assistant_message,
    confidence_completion,
    confidence_messages,
    pairwise_completion,
    pairwise_messages,
)


def modal_answer(answers: list[str | None]) -> str | None:
    """Most frequent parsed answer; ties go to the one seen first (``Counter`` keeps insertion order)."""
    parsed = [answer for answer in answers if answer is not None]
    return Counter(parsed).most_common(1)[0][0] if parsed else None


def question_consistency(samples: pd.DataFrame) -> pd.DataFrame:
    """Per question: modal answer, consistency (share of all samples equal to it), its correctness.

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
                "modal_answer": modal,
                "consistency": len(agreeing) / len(group),
                "modal_correct": bool(agreeing["correct"].any()) if modal is not None else False,
            }
        )
    return pd.DataFrame(rows)


def consistency_bin(consistency: pd.Series | np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin index in [0, n_bins - 1]; consistency 1.0 falls in the top bin."""
    return np.minimum((np.asarray(consistency, dtype=float) * n_bins).astype(int), n_bins - 1)


def bin_accuracy(consistency: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per consistency bin: edges, question count and empirical accuracy of the modal answers."""
    bins = consistency_bin(consistency["consistency"], n_bins)
    grouped = consistency.assign(bin=bins).groupby("bin")["modal_correct"]
    table = pd.DataFrame({"bin": np.arange(n_bins)})
    table["lower"] = table["bin"] / n_bins
    table["upper"] = (table["bin"] + 1) / n_bins
    table["n_questions"] = table["bin"].map(grouped.size()).fillna(0).astype(int)
    table["accuracy"] = table["bin"].map(grouped.mean().astype(float))
    return table


def target_confidences(
    consistency: pd.DataFrame, bins: pd.DataFrame, noise: float, seed: int
) -> pd.DataFrame:
    """Attach ``bin`` and ``target_confidence`` = bin accuracy + U(-noise, noise), clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    bin_index = consistency_bin(consistency["consistency"], len(bins))
    accuracy = bins.set_index("bin")["accuracy"].reindex(bin_index).to_numpy()
    jitter = rng.uniform(-noise, noise, size=len(consistency))
    return consistency.assign(bin=bin_index, target_confidence=np.clip(accuracy + jitter, 0.0, 1.0))


def balance_bins(targets: pd.DataFrame, max_ratio: float, seed: int) -> pd.DataFrame:
    """Subsample bins holding more than ``max_ratio`` x the median non-empty bin count."""
    counts = targets["bin"].value_counts()
    cap = max(1, int(np.ceil(max_ratio * counts.median())))
    kept = [
        group.sample(n=min(len(group), cap), random_state=seed)
        for _, group in targets.groupby("bin", sort=True)
    ]
    return pd.concat(kept).sort_values("question_id").reset_index(drop=True)


def single_task_examples(targets: pd.DataFrame, questions: pd.DataFrame) -> list[dict]:
    """One answer-plus-confidence example per question, the answer being the model's own modal answer."""
    by_id = questions.set_index("id")
    examples = []
    for row in targets.itertuples():
        question = {"id": row.question_id, **by_id.loc[row.question_id].to_dict()}
        examples.append(
            {
                "prompt": confidence_messages(question),
                "completion": assistant_message(confidence_completion(row.modal_answer, row.target_confidence)),
                "task": "single",
                "domain": question["domain"],
                "question_ids": [row.question_id],
                "answers": [row.modal_answer],
                "target_confidence": float(row.target_confidence),
                "preferred": -1,
            }
        )
    return examples


def pairwise_task_examples(
    targets: pd.DataFrame, questions: pd.DataFrame, n_pairs: int, seed: int
) -> list[dict]:
    """Pairs of questions from different bins; the target picks the one with the higher target confidence."""
    rng = np.random.default_rng(seed)
    by_id = questions.set_index("id")
    rows = targets.reset_index(drop=True)
    examples = []
    attempts = 0
    while len(examples) < n_pairs and attempts < 50 * n_pairs and rows["bin"].nunique() > 1:
        attempts += 1
        first, second = rows.iloc[rng.choice(len(rows), size=2, replace=False)].itertuples()
        if first.bin == second.bin:
            continue
        questions_pair = [{"id": row.question_id, **by_id.loc[row.question_id].to_dict()} for row in (first, second)]
        preferred = 1 if first.target_confidence >= second.target_confidence else 2
        examples.append(
            {
                "prompt": pairwise_messages(*questions_pair),
                "completion": assistant_message(pairwise_completion(preferred, first.modal_answer, second.modal_answer)),
                "task": "pairwise",
                "domain": f"{questions_pair[0]['domain']}|{questions_pair[1]['domain']}",
                "question_ids": [first.question_id, second.question_id],
                "answers": [first.modal_answer, second.modal_answer],
                "target_confidence": float("nan"),
                "preferred": preferred,
            }
        )
    return examples
