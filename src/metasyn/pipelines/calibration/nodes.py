"""calibration nodes: prompt each model on the test questions, score its outputs, measure, compare, plot."""

from __future__ import annotations

import logging
from itertools import combinations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metasyn.lm.answers import (
    extract_answer,
    get_matcher,
    parse_confidence,
    parse_preference,
)
from metasyn.lm.generation import generate
from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import confidence_messages, pairwise_messages, render_prompts
from metasyn.metacognition import plots as calibration_plots
from metasyn.metacognition.calibration import (
    ALL_DOMAINS,
    Estimator,
    better_of_pair,
    confidence_task_metrics,
    paired_difference,
    pairwise_task_metrics,
    summarize_by_domain,
)
from metasyn.questions import answer_type, validate_questions

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ["model", "domain", "metric", "value", "ci_low", "ci_high", "n", "note"]


def _checked_test_questions(test_questions: pd.DataFrame) -> pd.DataFrame:
    if "consistency" not in test_questions.columns:
        raise ValueError(
            "test_questions lacks the 'consistency' column (the base model's consistency per question) that "
            "the pairwise task's AUC_c ranks by; produce test_questions with the data_prep pipeline."
        )
    validate_questions(test_questions)
    return test_questions


def pair_test_questions(test_questions: pd.DataFrame, pairs: dict) -> pd.DataFrame:
    """Seeded pairs of distinct test questions of the same domain, each pair's order drawn at random."""
    questions = _checked_test_questions(test_questions)
    rng = np.random.default_rng(pairs["seed"])
    rows = []
    for domain, group in questions.groupby("domain", sort=True):
        candidates = list(combinations(group["id"], 2))
        drawn = rng.choice(len(candidates), min(pairs["per_domain"], len(candidates)), replace=False)
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


def generate_confidence_answers(model: LanguageModel, test_questions: pd.DataFrame, generation: dict) -> pd.DataFrame:
    """Greedy answer-plus-confidence output for each test question, in the format the fine-tunes learnt."""
    records = _checked_test_questions(test_questions).to_dict("records")
    outputs = generate(
        model,
        render_prompts(model.tokenizer, [confidence_messages(question) for question in records]),
        generation["confidence_max_new_tokens"],
        batch_size=generation["batch_size"],
        progress="confidence answers",
    )
    return pd.DataFrame({"question_id": [question["id"] for question in records], "raw_output": outputs.texts})


def score_confidence_answers(
    generations: pd.DataFrame, test_questions: pd.DataFrame, matcher: str, model_name: str
) -> pd.DataFrame:
    """Per test question: parsed answer and confidence, correctness, and whether both could be read."""
    match = get_matcher(matcher)
    questions = test_questions.set_index("id").loc[generations["question_id"]].reset_index()
    rows = []
    for question, output in zip(questions.to_dict("records"), generations["raw_output"]):
        kind = answer_type(question["domain"])
        answer = extract_answer(output, kind)
        confidence = parse_confidence(output)
        rows.append(
            {
                "question_id": question["id"],
                "domain": question["domain"],
                "model": model_name,
                "raw_output": output,
                "answer": answer,
                "confidence": np.nan if confidence is None else confidence,
                "correct": match(answer, question["answer"], list(question["aliases"]), kind),
                "parsed": answer is not None and confidence is not None,
            }
        )
    return pd.DataFrame(rows)


def generate_pairwise_choices(
    model: LanguageModel, test_questions: pd.DataFrame, question_pairs: pd.DataFrame, generation: dict
) -> pd.DataFrame:
    """Greedy pairwise output (which question the model is more likely to get right) for each test pair."""
    by_id = {question["id"]: question for question in test_questions.to_dict("records")}
    conversations = [
        pairwise_messages(by_id[first], by_id[second])
        for first, second in zip(question_pairs["question_id_1"], question_pairs["question_id_2"])
    ]
    outputs = generate(
        model,
        render_prompts(model.tokenizer, conversations),
        generation["pairwise_max_new_tokens"],
        batch_size=generation["batch_size"],
        progress="pairwise choices",
    )
    return question_pairs.assign(raw_output=outputs.texts)


def score_pairwise_choices(
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


def _confidence_estimator(outputs: pd.DataFrame, n_bins: int) -> Estimator:
    correct = outputs["correct"].to_numpy(dtype=bool)
    confidence = outputs["confidence"].where(outputs["parsed"]).to_numpy(dtype=float)
    return lambda rows: confidence_task_metrics(confidence[rows], correct[rows], n_bins)


def _pairwise_estimator(outputs: pd.DataFrame) -> Estimator:
    choice = outputs["preferred"].fillna(0).to_numpy(dtype=int)
    by_accuracy = better_of_pair(outputs["correct_1"], outputs["correct_2"])
    by_consistency = better_of_pair(outputs["consistency_1"], outputs["consistency_2"])
    return lambda rows: pairwise_task_metrics(choice[rows], by_accuracy[rows], by_consistency[rows])


def _model_of(outputs: pd.DataFrame) -> str:
    models = outputs["model"].unique()
    if len(models) != 1:
        raise ValueError(f"Expected the outputs of one model, got models {list(models)}.")
    return str(models[0])


def compute_calibration_metrics(
    calibration_outputs: pd.DataFrame, pairwise_outputs: pd.DataFrame, metrics: dict
) -> pd.DataFrame:
    """One model's metrics per domain and pooled, with bootstrap intervals (schema: the package docstring)."""
    table = pd.concat(
        [
            summarize_by_domain(
                calibration_outputs["domain"],
                _confidence_estimator(calibration_outputs, metrics["ece_bins"]),
                **metrics["bootstrap"],
            ),
            summarize_by_domain(
                pairwise_outputs["domain"], _pairwise_estimator(pairwise_outputs), **metrics["bootstrap"]
            ),
        ],
        ignore_index=True,
    ).assign(model=_model_of(calibration_outputs))[TABLE_COLUMNS]
    pooled = table[table["domain"] == ALL_DOMAINS].set_index("metric")["value"]
    logger.info(
        "%s (all domains): accuracy %.3f, parse rate %.3f, ECE %.3f, AUROC %.3f, AUC_a %.3f, AUC_c %.3f",
        _model_of(calibration_outputs),
        *(pooled[name] for name in ("accuracy", "parse_rate", "ece", "auroc", "auc_a", "auc_c")),
    )
    return table


def _aligned(outputs: pd.DataFrame, base_outputs: pd.DataFrame, key: str) -> pd.DataFrame:
    """``base_outputs`` in the row order of ``outputs``, checked to cover the same items."""
    if set(outputs[key]) != set(base_outputs[key]) or outputs[key].duplicated().any():
        raise ValueError(
            f"{_model_of(outputs)} and {_model_of(base_outputs)} were evaluated on different items ({key}); "
            "rerun the calibration pipeline for both so they share test questions and pairs."
        )
    return base_outputs.set_index(key).loc[outputs[key]].reset_index()


def compare_with_base(
    calibration_outputs: pd.DataFrame,
    pairwise_outputs: pd.DataFrame,
    base_calibration_outputs: pd.DataFrame,
    base_pairwise_outputs: pd.DataFrame,
    metrics: dict,
) -> pd.DataFrame:
    """Fine-tuned minus base per metric and domain, with paired bootstrap intervals (same questions resampled)."""
    base_single = _aligned(calibration_outputs, base_calibration_outputs, "question_id")
    base_pairs = _aligned(pairwise_outputs, base_pairwise_outputs, "pair_id")
    single = paired_difference(
        _confidence_estimator(calibration_outputs, metrics["ece_bins"]),
        _confidence_estimator(base_single, metrics["ece_bins"]),
    )
    pairwise = paired_difference(_pairwise_estimator(pairwise_outputs), _pairwise_estimator(base_pairs))
    return pd.concat(
        [
            summarize_by_domain(calibration_outputs["domain"], single, **metrics["bootstrap"]),
            summarize_by_domain(pairwise_outputs["domain"], pairwise, **metrics["bootstrap"]),
        ],
        ignore_index=True,
    ).assign(model=_model_of(calibration_outputs))[TABLE_COLUMNS]


def combine_calibration_metrics(*tables: pd.DataFrame) -> pd.DataFrame:
    """Every model's metrics and every fine-tune's differences from base, in one long table."""
    table = pd.concat(tables, ignore_index=True)[TABLE_COLUMNS]
    repeated = table.duplicated(["model", "domain", "metric"])
    if repeated.any():
        raise ValueError(f"Metric rows appear twice: {table[repeated].head().to_dict('records')}.")
    return table


def summarize_calibration_metrics(table: pd.DataFrame) -> dict:
    """The metrics table as nested JSON, ``{model: {domain: {metric: {value, ci_low, ci_high, n, note}}}}``."""
    summary: dict = {}
    for row in table.to_dict("records"):
        entry = {key: None if pd.isna(row[key]) else float(row[key]) for key in ("value", "ci_low", "ci_high")}
        summary.setdefault(row["model"], {}).setdefault(row["domain"], {})[row["metric"]] = {
            **entry,
            "n": int(row["n"]),
            "note": row["note"],
        }
    return summary


def plot_reliability_diagrams(n_bins: int, *calibration_outputs: pd.DataFrame) -> Figure:
    """Reliability diagrams of every model, side by side (all domains pooled)."""
    return calibration_plots.reliability_diagrams(pd.concat(calibration_outputs, ignore_index=True), n_bins)


def plot_risk_coverage(*calibration_outputs: pd.DataFrame) -> Figure:
    """Risk-coverage curves of every model (all domains pooled)."""
    return calibration_plots.risk_coverage_curves(pd.concat(calibration_outputs, ignore_index=True))


def plot_metrics_by_domain(calibration_metrics_table: pd.DataFrame) -> Figure:
    """Each metric per domain and model, with bootstrap intervals."""
    return calibration_plots.metrics_by_domain(calibration_metrics_table)
