"""Evaluating stated confidence on held-out questions: pairing, scoring outputs, metric tables, differences.

The calibration pipeline's science, without Kedro: seeded same-domain question pairs for the pairwise task,
scoring of each model's raw outputs (answer, confidence, choice), one model's metrics per domain and pooled
with bootstrap intervals, and a fine-tune's paired differences from the base model on the same items.
Metric definitions: ``metasyn.metacognition.calibration``; table schema: ``metasyn.pipelines.calibration``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from metasyn.lm.answers import Matcher, parse_confidence, parse_preference, score_answers
from metasyn.metacognition.calibration import (
    ALL_DOMAINS,
    Estimator,
    better_of_pair,
    confidence_task_metrics,
    paired_difference,
    pairwise_task_metrics,
    summarize_by_domain,
)
from metasyn.questions import validate_questions

logger = logging.getLogger(__name__)

# The long metrics table: one row per model, domain and metric.
TABLE_COLUMNS = ["model", "domain", "metric", "value", "ci_low", "ci_high", "n", "note"]


# ------------------------------------------------------------------------------------------- questions


def check_test_questions(test_questions: pd.DataFrame) -> pd.DataFrame:
    """``test_questions`` unchanged, after checking the question schema and the base model's consistency column."""
    if "consistency" not in test_questions.columns:
        raise ValueError(
            "test_questions lacks the 'consistency' column (the base model's consistency per question) that "
            "the pairwise task's AUC_c ranks by; produce test_questions with the data_prep pipeline."
        )
    validate_questions(test_questions)
    return test_questions


def pair_questions(test_questions: pd.DataFrame, per_domain: int, seed: int) -> pd.DataFrame:
    """Seeded pairs of distinct test questions of the same domain, each pair's order drawn at random.

    Up to ``per_domain`` pairs per domain, drawn without replacement from all its pairs of questions; columns
    ``pair_id, domain, question_id_1, question_id_2``.
    """
    questions = check_test_questions(test_questions)
    rng = np.random.default_rng(seed)
    rows = []
    for domain, group in questions.groupby("domain", sort=True):
        candidates = list(combinations(group["id"], 2))
        drawn = rng.choice(len(candidates), min(per_domain, len(candidates)), replace=False)
        for number, index in enumerate(np.sort(drawn)):
            # A random order, so the model's preference for position 1 or 2 cannot pass for discrimination.
            first, second = rng.permutation(candidates[index])
            rows.append(
                {"pair_id": f"{domain}-{number:04d}", "domain": domain, "question_id_1": first, "question_id_2": second}
            )
    if not rows:
        raise ValueError(
            "No question pairs: every domain has fewer than two test questions. Raise data_prep's test "
            "share (data_prep.split.test_fraction) or the question counts."
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- scoring


def score_confidence_outputs(
    generations: pd.DataFrame, test_questions: pd.DataFrame, matcher: Matcher, model_name: str
) -> pd.DataFrame:
    """Per test question: parsed answer and confidence, correctness, and whether both could be read.

    ``generations`` holds ``question_id, raw_output``; the result keeps its row order.
    """
    questions = test_questions.set_index("id").loc[generations["question_id"]].reset_index().to_dict("records")
    scored = score_answers(list(generations["raw_output"]), questions, matcher)
    rows = []
    for question, output, (answer, correct) in zip(questions, generations["raw_output"], scored, strict=True):
        confidence = parse_confidence(output)
        rows.append(
            {
                "question_id": question["id"],
                "domain": question["domain"],
                "model": model_name,
                "raw_output": output,
                "answer": answer,
                "confidence": np.nan if confidence is None else confidence,
                "correct": correct,
                "parsed": answer is not None and confidence is not None,
            }
        )
    return pd.DataFrame(rows)


def score_pairwise_outputs(
    generations: pd.DataFrame, calibration_outputs: pd.DataFrame, test_questions: pd.DataFrame, model_name: str
) -> pd.DataFrame:
    """Per pair: the parsed choice (1, 2 or missing) beside each question's correctness and consistency.

    Correctness is the same model's answer to the question in the single-question task (greedy, so the
    answer it gives); consistency is the base model's, from data_prep.
    """
    correct = calibration_outputs.set_index("question_id")["correct"]
    consistency = test_questions.set_index("id")["consistency"]
    preferred = pd.array([parse_preference(output) for output in generations["raw_output"]], dtype="Int64")
    scored = generations.assign(model=model_name, preferred=preferred, parsed=~preferred.isna())
    for side in ("1", "2"):
        ids = generations[f"question_id_{side}"]
        scored[f"correct_{side}"] = correct.loc[ids].to_numpy(dtype=bool)
        scored[f"consistency_{side}"] = consistency.loc[ids].to_numpy(dtype=float)
    return scored


# ------------------------------------------------------------------------------------------ estimators


def confidence_estimator(outputs: pd.DataFrame, n_bins: int) -> Estimator:
    """Single-question metrics of scored outputs (``score_confidence_outputs``) on the given row positions."""
    correct = outputs["correct"].to_numpy(dtype=bool)
    confidence = outputs["confidence"].where(outputs["parsed"]).to_numpy(dtype=float)
    return lambda rows: confidence_task_metrics(confidence[rows], correct[rows], n_bins)


def pairwise_estimator(outputs: pd.DataFrame) -> Estimator:
    """Pairwise metrics of scored pairs (``score_pairwise_outputs``) on the given row positions."""
    choice = outputs["preferred"].fillna(0).to_numpy(dtype=int)
    by_accuracy = better_of_pair(outputs["correct_1"], outputs["correct_2"])
    by_consistency = better_of_pair(outputs["consistency_1"], outputs["consistency_2"])
    return lambda rows: pairwise_task_metrics(choice[rows], by_accuracy[rows], by_consistency[rows])


def model_of(outputs: pd.DataFrame) -> str:
    """The one model whose outputs these are; a ValueError when they mix models."""
    models = outputs["model"].unique()
    if len(models) != 1:
        raise ValueError(f"Expected the outputs of one model, got models {list(models)}.")
    return str(models[0])


# ---------------------------------------------------------------------------------------------- tables


def model_metrics(
    calibration_outputs: pd.DataFrame, pairwise_outputs: pd.DataFrame, n_bins: int, bootstrap: Mapping
) -> pd.DataFrame:
    """One model's metrics per domain and pooled, with bootstrap intervals, as rows of ``TABLE_COLUMNS``.

    ``bootstrap`` holds ``summarize_by_domain``'s keyword arguments (``n_resamples, confidence_level, seed``).
    """
    table = pd.concat(
        [
            summarize_by_domain(
                calibration_outputs["domain"], confidence_estimator(calibration_outputs, n_bins), **bootstrap
            ),
            summarize_by_domain(pairwise_outputs["domain"], pairwise_estimator(pairwise_outputs), **bootstrap),
        ],
        ignore_index=True,
    ).assign(model=model_of(calibration_outputs))[TABLE_COLUMNS]
    pooled = table[table["domain"] == ALL_DOMAINS].set_index("metric")["value"]
    logger.info(
        "%s (all domains): accuracy %.3f, parse rate %.3f, ECE %.3f, AUROC %.3f, AUC_a %.3f, AUC_c %.3f",
        model_of(calibration_outputs),
        *(pooled[name] for name in ("accuracy", "parse_rate", "ece", "auroc", "auc_a", "auc_c")),
    )
    return table


def aligned(outputs: pd.DataFrame, base_outputs: pd.DataFrame, key: str) -> pd.DataFrame:
    """``base_outputs`` in the row order of ``outputs``, checked to cover the same items."""
    if set(outputs[key]) != set(base_outputs[key]) or outputs[key].duplicated().any():
        raise ValueError(
            f"{model_of(outputs)} and {model_of(base_outputs)} were evaluated on different items ({key}); "
            "rerun the calibration pipeline for both so they share test questions and pairs."
        )
    return base_outputs.set_index(key).loc[outputs[key]].reset_index()


def differences_from_base(
    calibration_outputs: pd.DataFrame,
    pairwise_outputs: pd.DataFrame,
    base_calibration_outputs: pd.DataFrame,
    base_pairwise_outputs: pd.DataFrame,
    n_bins: int,
    bootstrap: Mapping,
) -> pd.DataFrame:
    """Fine-tuned minus base per metric and domain, with paired bootstrap intervals (same questions resampled)."""
    base_single = aligned(calibration_outputs, base_calibration_outputs, "question_id")
    base_pairs = aligned(pairwise_outputs, base_pairwise_outputs, "pair_id")
    single = paired_difference(
        confidence_estimator(calibration_outputs, n_bins),
        confidence_estimator(base_single, n_bins),
    )
    pairwise = paired_difference(pairwise_estimator(pairwise_outputs), pairwise_estimator(base_pairs))
    return pd.concat(
        [
            summarize_by_domain(calibration_outputs["domain"], single, **bootstrap),
            summarize_by_domain(pairwise_outputs["domain"], pairwise, **bootstrap),
        ],
        ignore_index=True,
    ).assign(model=model_of(calibration_outputs))[TABLE_COLUMNS]


def combine_tables(*tables: pd.DataFrame) -> pd.DataFrame:
    """Metric tables in one long table; a ValueError when a model, domain and metric appear twice."""
    table = pd.concat(tables, ignore_index=True)[TABLE_COLUMNS]
    repeated = table.duplicated(["model", "domain", "metric"])
    if repeated.any():
        raise ValueError(f"Metric rows appear twice: {table[repeated].head().to_dict('records')}.")
    return table


def nested_summary(table: pd.DataFrame) -> dict:
    """The metrics table as nested JSON, ``{model: {domain: {metric: {value, ci_low, ci_high, n, note}}}}``.

    Undefined values (NaN) become None.
    """
    summary: dict = {}
    for row in table.to_dict("records"):
        entry = {key: None if pd.isna(row[key]) else float(row[key]) for key in ("value", "ci_low", "ci_high")}
        summary.setdefault(row["model"], {}).setdefault(row["domain"], {})[row["metric"]] = {
            **entry,
            "n": int(row["n"]),
            "note": row["note"],
        }
    return summary
