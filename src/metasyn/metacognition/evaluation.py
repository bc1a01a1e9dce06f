"""Evaluating stated confidence on held-out questions: pairing, scoring outputs, metric tables, differences.

The calibration pipeline's science, without Kedro: seeded same-domain question pairs for the pairwise task,
scoring of each model's raw outputs (answer, confidence, choice), one model's metrics per domain and pooled
with bootstrap intervals, and a fine-tune's paired differences from the base model on the same items.
Metric definitions: ``metasyn.metacognition.calibration``; table schema: ``metasyn.pipelines.calibration``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from metasyn.lm.answers import Matcher, parse_confidence, parse_preference, score_answers
from metasyn.metacognition.calibration import (
    ALL_DOMAINS,
    DIFFERENCE_SUFFIX,
    Estimator,
    better_of_pair,
    confidence_task_metrics,
    paired_difference,
    pairs_over_questions,
    pairwise_task_metrics,
    summarize_by_domain,
)
from metasyn.questions import validate_questions

logger = logging.getLogger(__name__)

# The long metrics table: one row per model, domain and metric.
TABLE_COLUMNS = ["model", "method", "domain", "metric", "value", "ci_low", "ci_high", "n", "note"]


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
    if per_domain < 1:
        raise ValueError(f"calibration.pairs.per_domain must be at least 1 (pairs per domain); got {per_domain}.")
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


def graded_answer_texts(outputs: pd.DataFrame) -> list[str]:
    """Per output, the answer that was graded, or the output's first line where none could be read."""
    return [
        str(answer) if isinstance(answer, str) and answer else (str(raw).strip().splitlines() or [""])[0]
        for answer, raw in zip(outputs["answer"], outputs["raw_output"])
    ]


# ------------------------------------------------------------------------------------------ estimators

# Where each elicitation method's confidence lives in a model's calibration outputs.
CONFIDENCE_COLUMNS = {"stated": "confidence", "forced": "confidence_forced", "p_true": "confidence_p_true"}
# Metrics that do not depend on the elicitation method, and the method label their rows carry.
ANSWER_METRICS, ANSWER_METHOD, PAIRWISE_METHOD = ("accuracy",), "answer", "pairwise"


def check_methods(methods: Sequence[str], verdict_method: str) -> list[str]:
    """The elicitation methods, checked before any generation: known, not repeated, the verdict's among them."""
    unknown = sorted(set(methods) - set(CONFIDENCE_COLUMNS))
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(
            f"calibration.methods must list distinct methods from {sorted(CONFIDENCE_COLUMNS)}; got {list(methods)}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    if verdict_method not in methods:
        raise ValueError(
            f"calibration.verdict_method {verdict_method!r} is not among calibration.methods {list(methods)}; "
            "add it there or choose one of them."
        )
    return list(methods)


def mass_column(method: str) -> str:
    """The column holding the probability mass an elicitation method's label tokens had."""
    return f"{method}_mass"


def method_confidence(outputs: pd.DataFrame, method: str) -> np.ndarray:
    """Each question's confidence under ``method``, NaN where that method gave none."""
    if method not in CONFIDENCE_COLUMNS:
        raise ValueError(
            f"Unknown confidence elicitation method {method!r}; calibration.methods takes {sorted(CONFIDENCE_COLUMNS)}."
        )
    column = CONFIDENCE_COLUMNS[method]
    if column not in outputs.columns:
        raise ValueError(
            f"The calibration outputs of {model_of(outputs)} have no {column!r} column for method {method!r}; "
            "rerun the calibration pipeline with that method in calibration.methods."
        )
    confidence = outputs[column].to_numpy(dtype=float)
    # A stated confidence counts only with a readable answer beside it, as the trained format asks.
    return np.where(outputs["parsed"], confidence, np.nan) if method == "stated" else confidence


def with_method_confidence(outputs: pd.DataFrame, method: str) -> pd.DataFrame:
    """``outputs`` with ``confidence`` and ``parsed`` replaced by ``method``'s (for figures of one method)."""
    confidence = method_confidence(outputs, method)
    return outputs.assign(confidence=confidence, parsed=np.isfinite(confidence))


def method_rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """The metric rows of one elicitation method, with the method-free answer and pairwise rows."""
    return table[table["method"].isin([method, ANSWER_METHOD, PAIRWISE_METHOD])]


def confidence_estimator(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int, min_n: int, scored: np.ndarray | None = None
) -> Estimator:
    """Single-question metrics of one method's confidences on the given question positions (``scored`` only)."""
    scored = np.ones(len(confidence), dtype=bool) if scored is None else scored
    return lambda rows: confidence_task_metrics(confidence[rows], correct[rows], n_bins, min_n, scored[rows])


def question_positions(calibration_outputs: pd.DataFrame, question_ids: pd.Series) -> np.ndarray:
    """Positions in ``calibration_outputs`` of the given question ids."""
    return pd.Index(calibration_outputs["question_id"]).get_indexer(question_ids)


def pairwise_estimator(
    pairwise_outputs: pd.DataFrame, calibration_outputs: pd.DataFrame, min_n: int, scored: np.ndarray | None = None
) -> Estimator:
    """Pairwise metrics over resampled *questions* of ``calibration_outputs`` (a question sits in many pairs);
    AUC_a and AUC_c on the pairs ``scored`` only."""
    choice = pairwise_outputs["preferred"].fillna(0).to_numpy(dtype=int)
    by_accuracy = better_of_pair(pairwise_outputs["correct_1"], pairwise_outputs["correct_2"])
    by_consistency = better_of_pair(pairwise_outputs["consistency_1"], pairwise_outputs["consistency_2"])
    scored = np.ones(len(choice), dtype=bool) if scored is None else scored
    return pairs_over_questions(
        lambda rows: pairwise_task_metrics(choice[rows], by_accuracy[rows], by_consistency[rows], min_n, scored[rows]),
        question_positions(calibration_outputs, pairwise_outputs["question_id_1"]),
        question_positions(calibration_outputs, pairwise_outputs["question_id_2"]),
        len(calibration_outputs),
    )


def check_not_empty(calibration_outputs: pd.DataFrame, pairwise_outputs: pd.DataFrame) -> None:
    """Refuse a scored table without rows: each of its metrics would be NaN, a table that reads like a result.

    (A table with rows but too few confidences or readable pairs is another matter: those metrics are NaN with a
    note saying why, see ``calibration.too_few``.)
    """
    if calibration_outputs.empty:
        raise ValueError(
            "The calibration outputs are empty: no test question was answered and scored, so there is nothing to "
            "measure. Either test_questions (data_prep's output) was empty or the outputs were not scored; run "
            "data_prep and check its test split (data_prep.split.test_fraction), then run calibration again."
        )
    if pairwise_outputs.empty:
        raise ValueError(
            f"The pairwise outputs of {model_of(calibration_outputs)} are empty: no question pair was asked, so "
            "AUC_a, AUC_c and the pairwise parse rate have nothing to rest on. Check calibration.pairs.per_domain "
            "(at least 1) and run the calibration pipeline again."
        )


def model_of(outputs: pd.DataFrame) -> str:
    """The one model whose outputs these are; a ValueError when they mix models."""
    models = outputs["model"].unique()
    if len(models) != 1:
        raise ValueError(f"Expected the outputs of one model, got models {list(models)}.")
    return str(models[0])


# ---------------------------------------------------------------------------------------------- tables


def _method_rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Confidence-task rows labelled with their method, the method-free answer metrics with 'answer'."""
    answer = table["metric"].isin([*ANSWER_METRICS, *(f"{name}{DIFFERENCE_SUFFIX}" for name in ANSWER_METRICS)])
    return table.assign(method=np.where(answer, ANSWER_METHOD, method))


def _summaries(
    calibration_outputs: pd.DataFrame,
    estimators: Mapping[str, Estimator],
    pairwise: Estimator,
    bootstrap: Mapping,
) -> pd.DataFrame:
    """Per-method and pairwise summaries over the same question resamples, as rows of ``TABLE_COLUMNS``."""
    domains = calibration_outputs["domain"]
    frames = [
        _method_rows(summarize_by_domain(domains, estimator, **bootstrap), method)
        for method, estimator in estimators.items()
    ]
    frames.append(summarize_by_domain(domains, pairwise, **bootstrap).assign(method=PAIRWISE_METHOD))
    table = pd.concat(frames, ignore_index=True).assign(model=model_of(calibration_outputs))[TABLE_COLUMNS]
    # Every method repeats the method-free answer rows; they are the same numbers, kept once.
    return table.drop_duplicates(["method", "domain", "metric"], ignore_index=True)


def model_metrics(
    calibration_outputs: pd.DataFrame,
    pairwise_outputs: pd.DataFrame,
    n_bins: int,
    bootstrap: Mapping,
    methods: Sequence[str],
    min_n: int,
) -> pd.DataFrame:
    """One model's metrics per method, domain and pooled, with bootstrap intervals, as rows of ``TABLE_COLUMNS``.

    ``bootstrap`` holds ``summarize_by_domain``'s keyword arguments (``n_resamples, confidence_level, seed``).
    Every method and the pairwise task are resampled over the same questions.
    """
    check_not_empty(calibration_outputs, pairwise_outputs)
    correct = calibration_outputs["correct"].to_numpy(dtype=bool)
    estimators = {
        method: confidence_estimator(method_confidence(calibration_outputs, method), correct, n_bins, min_n)
        for method in methods
    }
    table = _summaries(
        calibration_outputs, estimators, pairwise_estimator(pairwise_outputs, calibration_outputs, min_n), bootstrap
    )
    pooled = table[table["domain"] == ALL_DOMAINS].set_index(["method", "metric"])["value"]
    logger.info(
        "%s (all domains): accuracy %.3f; %s; pairwise parse rate %.3f, AUC_a %.3f, AUC_c %.3f",
        model_of(calibration_outputs),
        pooled[(ANSWER_METHOD, "accuracy")],
        "; ".join(
            f"{method}: parse rate {pooled[(method, 'parse_rate')]:.3f}, ECE {pooled[(method, 'ece')]:.3f}, "
            f"AUROC {pooled[(method, 'auroc')]:.3f}"
            for method in methods
        ),
        *(pooled[(PAIRWISE_METHOD, name)] for name in ("pairwise_parse_rate", "auc_a", "auc_c")),
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
    methods: Sequence[str],
    min_n: int,
) -> pd.DataFrame:
    """Fine-tuned minus base per method, metric and domain, like with like, on the same question resamples.

    Per method, both models are scored on the questions where *both* have a confidence (a model that parses
    fewer questions cannot be compared on an easier subset); pairwise, on the pairs both read.
    """
    check_not_empty(calibration_outputs, pairwise_outputs)
    check_not_empty(base_calibration_outputs, base_pairwise_outputs)
    base_single = aligned(calibration_outputs, base_calibration_outputs, "question_id")
    base_pairs = aligned(pairwise_outputs, base_pairwise_outputs, "pair_id")
    correct, base_correct = (outputs["correct"].to_numpy(dtype=bool) for outputs in (calibration_outputs, base_single))
    estimators = {}
    for method in methods:
        ours, theirs = method_confidence(calibration_outputs, method), method_confidence(base_single, method)
        both = np.isfinite(ours) & np.isfinite(theirs)
        estimators[method] = paired_difference(
            confidence_estimator(ours, correct, n_bins, min_n, both),
            confidence_estimator(theirs, base_correct, n_bins, min_n, both),
        )
    both_read = pairwise_outputs["preferred"].notna().to_numpy() & base_pairs["preferred"].notna().to_numpy()
    # AUC_a and AUC_c on the pairs both read; each pairwise parse rate on every pair, as the model wrote it.
    pairwise = paired_difference(
        pairwise_estimator(pairwise_outputs, calibration_outputs, min_n, both_read),
        pairwise_estimator(base_pairs, calibration_outputs, min_n, both_read),
    )
    return _summaries(calibration_outputs, estimators, pairwise, bootstrap)


def combine_tables(*tables: pd.DataFrame) -> pd.DataFrame:
    """Metric tables in one long table; a ValueError when a model, domain and metric appear twice."""
    table = pd.concat(tables, ignore_index=True)[TABLE_COLUMNS]
    repeated = table.duplicated(["model", "method", "domain", "metric"])
    if repeated.any():
        raise ValueError(f"Metric rows appear twice: {table[repeated].head().to_dict('records')}.")
    return table


def nested_summary(table: pd.DataFrame) -> dict:
    """The metrics table as nested JSON, ``{model: {method: {domain: {metric: {value, ci_low, ci_high, n, note}}}}}``.

    Undefined values (NaN) become None.
    """
    summary: dict = {}
    for row in table.to_dict("records"):
        entry = {key: None if pd.isna(row[key]) else float(row[key]) for key in ("value", "ci_low", "ci_high")}
        by_domain = summary.setdefault(row["model"], {}).setdefault(row["method"], {})
        by_domain.setdefault(row["domain"], {})[row["metric"]] = {
            **entry,
            "n": int(row["n"]),
            "note": row["note"],
        }
    return summary
