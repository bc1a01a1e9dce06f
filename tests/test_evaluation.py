"""The calibration evaluation library without Kedro: pairing, scoring, the model-of check, the consistency figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metasyn.lm.answers import get_matcher
from metasyn.metacognition import evaluation
from metasyn.metacognition.plots import consistency_figure


@pytest.fixture
def questions() -> pd.DataFrame:
    rows = [
        ("a1", "arithmetic", "What is 2 plus 2?", [], "4", [], 0.9),
        ("a2", "arithmetic", "What is 7 times 8?", [], "56", [], 0.3),
        ("f1", "factual", "What is the capital of France?", [], "Paris", ["Paris"], 1.0),
        ("f2", "factual", "Who wrote Hamlet?", [], "William Shakespeare", ["Shakespeare"], 0.2),
    ]
    return pd.DataFrame(rows, columns=["id", "domain", "question", "choices", "answer", "aliases", "consistency"])


def test_pairs_stay_within_a_domain_and_are_seeded(questions):
    pairs = evaluation.pair_questions(questions, per_domain=5, seed=0)
    assert pairs["pair_id"].tolist() == ["arithmetic-0000", "factual-0000"]
    assert {frozenset(pair) for pair in zip(pairs["question_id_1"], pairs["question_id_2"])} == {
        frozenset({"a1", "a2"}),
        frozenset({"f1", "f2"}),
    }
    pd.testing.assert_frame_equal(pairs, evaluation.pair_questions(questions, per_domain=5, seed=0))


def test_scoring_keeps_the_generation_order_and_marks_unparsed_outputs(questions):
    generations = pd.DataFrame(
        {"question_id": ["f2", "a1"], "raw_output": ["Answer: Shakespeare", "Answer: 4\nConfidence: 0.9"]}
    )
    scored = evaluation.score_confidence_outputs(generations, questions, get_matcher("exact"), "base")
    assert scored["question_id"].tolist() == ["f2", "a1"]
    assert scored["correct"].tolist() == [True, True] and scored["parsed"].tolist() == [False, True]
    assert np.isnan(scored.loc[0, "confidence"]) and scored.loc[1, "confidence"] == 0.9


def test_outputs_of_two_models_are_refused():
    with pytest.raises(ValueError, match="outputs of one model"):
        evaluation.model_of(pd.DataFrame({"model": ["base", "metacog"]}))


def test_consistency_figure_is_built_without_pyplot():
    consistency = pd.DataFrame({"domain": ["x", "x", "y"], "consistency": [0.1, 0.9, 0.5]})
    bins = pd.DataFrame({"lower": [0.0, 0.5], "upper": [0.5, 1.0], "accuracy": [np.nan, 0.75], "n_questions": [0, 4]})
    figure = consistency_figure(consistency, bins)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert [ax.get_title() for ax in figure.axes] == ["Consistency by domain", "Target confidence source"]
    assert [text.get_text() for text in figure.axes[1].texts] == ["n=4"]


BOOTSTRAP = {"n_resamples": 50, "confidence_level": 0.95, "seed": 0}


def _outputs(model: str, confidence: np.ndarray, correct: np.ndarray, **columns) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame({
        "question_id": [f"q{k}" for k in range(n)], "domain": "arithmetic", "model": model,
        "confidence": confidence, "correct": correct, "parsed": np.isfinite(confidence), **columns,
    })  # fmt: skip


def _pairs(model: str, preferred: list) -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": ["p0", "p1", "p2"], "domain": "arithmetic", "question_id_1": ["q0", "q2", "q4"],
        "question_id_2": ["q1", "q3", "q5"], "model": model, "preferred": pd.array(preferred, dtype="Int64"),
        "correct_1": [True, False, True], "correct_2": [False, True, False],
        "consistency_1": [0.9, 0.2, 0.8], "consistency_2": [0.1, 0.7, 0.3],
    })  # fmt: skip


def _row(table: pd.DataFrame, method: str, metric: str) -> pd.Series:
    return table[(table["method"] == method) & (table["metric"] == metric) & (table["domain"] == "all")].iloc[0]


def test_differences_compare_two_models_on_the_questions_both_gave_a_confidence():
    correct = np.array([True, False, True, False, True, False, True, False])
    nan = np.nan
    # base states a confidence on q0-q5, metacog on q3-q7: both on q3, q4, q5.
    base = _outputs("base", np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.2, nan, nan]), correct)
    metacog = _outputs("metacog", np.array([nan, nan, nan, 0.1, 0.9, 0.1, 0.8, 0.3]), correct)
    table = evaluation.differences_from_base(
        metacog, _pairs("metacog", [1, 2, 1]), base, _pairs("base", [1, 2, 1]), 10, BOOTSTRAP, ["stated"], 1
    )
    brier = _row(table, "stated", "brier_minus_base")
    # On q3-q5 (wrong, right, wrong): metacog (0.01 + 0.01 + 0.01) / 3, base (0.81 + 0.16 + 0.04) / 3.
    assert brier["n"] == 3
    assert brier["value"] == pytest.approx(0.01 - (0.81 + 0.16 + 0.04) / 3)
    assert _row(table, "answer", "accuracy_minus_base")["value"] == 0.0


def test_model_metrics_report_every_method_and_the_answer_metrics_once():
    correct = np.array([True, False, True, False, True, False])
    outputs = _outputs(
        "base", np.full(6, np.nan), correct, confidence_forced=np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]),
        confidence_p_true=np.array([0.2, 0.8, 0.3, 0.7, 0.4, 0.6]),
    )  # fmt: skip
    table = evaluation.model_metrics(
        outputs, _pairs("base", [1, None, None]), 10, BOOTSTRAP, ["stated", "forced", "p_true"], 3
    )
    assert set(table["method"]) == {"answer", "stated", "forced", "p_true", "pairwise"}
    assert (table["metric"] == "accuracy").sum() == 2  # once per domain (arithmetic, all), not once per method
    assert np.isnan(_row(table, "stated", "ece")["value"])  # a base model that states nothing
    assert _row(table, "forced", "auroc")["value"] == 1.0 and _row(table, "forced", "auroc")["n"] == 6
    assert _row(table, "p_true", "auroc")["value"] == 0.0
    assert _row(table, "forced", "parse_rate")["value"] == 1.0
    # Pairwise: one readable pair (below the minimum of 3), so AUC_a is undefined, not 0.5.
    auc_a = _row(table, "pairwise", "auc_a")
    assert np.isnan(auc_a["value"]) and "only 1 readable pairs" in auc_a["note"]
    assert _row(table, "pairwise", "pairwise_parse_rate")["value"] == pytest.approx(1 / 3)


def test_an_unknown_or_missing_method_is_refused_with_the_fix():
    outputs = _outputs("base", np.full(2, 0.5), np.array([True, False]))
    with pytest.raises(ValueError, match="calibration.methods takes"):
        evaluation.method_confidence(outputs, "vibes")
    with pytest.raises(ValueError, match="no 'confidence_forced' column"):
        evaluation.method_confidence(outputs, "forced")


def test_an_empty_scored_table_is_refused_with_its_likely_cause():
    outputs = _outputs("base", np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]), np.array([True, False] * 3))
    pairs = _pairs("base", [1, 2, 1])
    with pytest.raises(ValueError, match="calibration outputs are empty.*test_questions"):
        evaluation.model_metrics(outputs.iloc[:0], pairs.iloc[:0], 10, BOOTSTRAP, ["stated"], 1)
    with pytest.raises(ValueError, match="pairwise outputs of base are empty.*calibration.pairs.per_domain"):
        evaluation.model_metrics(outputs, pairs.iloc[:0], 10, BOOTSTRAP, ["stated"], 1)
    metacog = outputs.assign(model="metacog")
    with pytest.raises(ValueError, match="pairwise outputs of base are empty"):
        evaluation.differences_from_base(
            metacog, pairs.assign(model="metacog"), outputs, pairs.iloc[:0], 10, BOOTSTRAP, ["stated"], 1
        )


def test_asking_for_no_pairs_is_refused(questions):
    with pytest.raises(ValueError, match="per_domain must be at least 1"):
        evaluation.pair_questions(questions, 0, seed=0)
