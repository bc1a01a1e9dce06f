"""calibration nodes on hand-made questions and outputs: scoring, pairing, metrics, differences, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metasyn.metacognition import evaluation
from metasyn.pipelines.calibration import nodes

BOOTSTRAP = {"n_resamples": 50, "confidence_level": 0.95, "seed": 0}
METRICS = {"ece_bins": 10, "bootstrap": BOOTSTRAP, "min_n": 1}
METHODS = ["stated"]


@pytest.fixture
def calibration_outputs(confidence_generations, test_questions) -> pd.DataFrame:
    return nodes.score_confidence_answers(confidence_generations, test_questions, "exact", model_name="base")


@pytest.fixture
def pairwise_outputs(pairwise_generations, calibration_outputs, test_questions) -> pd.DataFrame:
    return nodes.score_pairwise_choices(pairwise_generations, calibration_outputs, test_questions, model_name="base")


def test_scoring_reads_answers_and_confidences_and_keeps_unparsed_outputs(calibration_outputs):
    scored = calibration_outputs.set_index("question_id")
    assert list(scored.index) == ["a1", "a2", "a3", "m1", "m2", "f1", "f2"]
    assert scored["correct"].tolist() == [True, False, True, True, False, True, False]
    assert scored["parsed"].tolist() == [True, True, False, True, False, True, True]
    np.testing.assert_allclose(scored["confidence"], [0.9, 0.8, np.nan, 0.7, np.nan, 0.95, 0.6])
    assert scored.loc["f1", "answer"] == "paris" and pd.isna(scored.loc["m2", "answer"])
    assert (scored["model"] == "base").all()
    assert scored.loc["m2", "raw_output"] == "I don't know."


def test_pairwise_scoring_uses_the_models_own_correctness_and_base_consistency(pairwise_outputs):
    scored = pairwise_outputs.set_index("pair_id")
    assert scored["preferred"].tolist()[:3] == [1, 1, 2] and pd.isna(scored.loc["p3", "preferred"])
    assert scored["parsed"].tolist() == [True, True, True, False]
    assert str(scored["preferred"].dtype) == "Int64"  # missing stays missing, not NaN-as-float
    assert scored["correct_1"].tolist() == [True, True, False, True]
    assert scored["correct_2"].tolist() == [False, True, True, False]
    assert scored["consistency_2"].tolist() == [0.3, 0.9, 0.8, 0.2]


def test_model_metrics_hand_values(calibration_outputs, pairwise_outputs):
    table = nodes.compute_calibration_metrics(calibration_outputs, pairwise_outputs, METHODS, METRICS)
    assert list(table.columns) == evaluation.TABLE_COLUMNS
    assert set(table["domain"]) == {"arithmetic", "multiple_choice", "factual", "all"}
    pooled = table[table["domain"] == "all"].set_index("metric")
    assert set(table["method"]) == {"answer", "stated", "pairwise"}
    assert pooled.loc["accuracy", "value"] == pytest.approx(4 / 7) and pooled.loc["accuracy", "n"] == 7
    assert pooled.loc["parse_rate", "value"] == pytest.approx(5 / 7)
    # Parsed: 0.9 and 0.95 right (bin 9: gap 2 * 0.075), 0.8 wrong, 0.7 right, 0.6 wrong -> 1.85 / 5.
    assert pooled.loc["ece", "value"] == pytest.approx(1.85 / 5) and pooled.loc["ece", "n"] == 5
    # AUC_a: p0 right, p2 right; p3 has no choice (missing), p1 both right -> 2 / 2.
    assert pooled.loc["auc_a", "value"] == 1.0 and pooled.loc["auc_a", "n"] == 2
    # AUC_c: p0 right, p1 wrong (0.6 < 0.9), p2 right; p3 no choice -> 2 / 3.
    assert pooled.loc["auc_c", "value"] == pytest.approx(2 / 3) and pooled.loc["auc_c", "n"] == 3
    assert pooled.loc["pairwise_parse_rate", "value"] == pytest.approx(3 / 4)
    assert (pooled["ci_low"] <= pooled["value"] + 1e-12).all() and (pooled["value"] <= pooled["ci_high"] + 1e-12).all()
    # One parsed multiple-choice answer (right): AUROC is undefined there, and the table says why.
    auroc = table[(table["domain"] == "multiple_choice") & (table["metric"] == "auroc")].iloc[0]
    assert np.isnan(auroc["value"]) and "all 1 answers correct" in auroc["note"]


def test_differences_from_base_are_paired(calibration_outputs, pairwise_outputs):
    tuned = calibration_outputs.assign(model="metacog")
    # The fine-tune states a confidence for a3 (which the base model left out): one more parsed output.
    tuned.loc[tuned["question_id"] == "a3", ["confidence", "parsed"]] = [0.8, True]
    # Shuffled rows: differences are matched by question, not by position.
    tuned = tuned.sample(frac=1, random_state=0)
    differences = nodes.compare_with_base(
        tuned, pairwise_outputs.assign(model="metacog"), calibration_outputs, pairwise_outputs, METHODS, METRICS
    )
    assert list(differences.columns) == evaluation.TABLE_COLUMNS and set(differences["model"]) == {"metacog"}
    pooled = differences[differences["domain"] == "all"].set_index("metric")
    assert pooled.loc["parse_rate_minus_base", "value"] == pytest.approx(1 / 7)
    assert pooled.loc["accuracy_minus_base", ["value", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    assert pooled.loc["auc_a_minus_base", ["value", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]


def test_differences_need_the_same_questions(calibration_outputs, pairwise_outputs):
    fewer = calibration_outputs.iloc[1:].assign(model="metacog")
    with pytest.raises(ValueError, match="different items"):
        nodes.compare_with_base(fewer, pairwise_outputs, calibration_outputs, pairwise_outputs, METHODS, METRICS)


def test_question_pairs_are_seeded_distinct_and_within_a_domain(test_questions):
    pairs = nodes.pair_test_questions(test_questions, {"per_domain": 2, "seed": 0})
    # Arithmetic has 3 questions (3 possible pairs, 2 drawn); the other domains 2 (one pair each).
    assert pairs.groupby("domain").size().to_dict() == {"arithmetic": 2, "factual": 1, "multiple_choice": 1}
    domain_of = test_questions.set_index("id")["domain"]
    assert (pairs["question_id_1"].map(domain_of) == pairs["domain"]).all()
    assert (pairs["question_id_2"].map(domain_of) == pairs["domain"]).all()
    assert (pairs["question_id_1"] != pairs["question_id_2"]).all() and pairs["pair_id"].is_unique
    pd.testing.assert_frame_equal(pairs, nodes.pair_test_questions(test_questions, {"per_domain": 2, "seed": 0}))
    every = nodes.pair_test_questions(test_questions, {"per_domain": 100, "seed": 0})
    assert len(every) == 3 + 1 + 1


def test_pairing_fails_early_on_unusable_test_questions(test_questions):
    with pytest.raises(ValueError, match="consistency"):
        nodes.pair_test_questions(test_questions.drop(columns="consistency"), {"per_domain": 2, "seed": 0})
    one_per_domain = test_questions.drop_duplicates("domain")
    with pytest.raises(ValueError, match="fewer than two test questions"):
        nodes.pair_test_questions(one_per_domain, {"per_domain": 2, "seed": 0})


def test_combined_table_refuses_repeated_rows(calibration_outputs, pairwise_outputs):
    table = nodes.compute_calibration_metrics(calibration_outputs, pairwise_outputs, METHODS, METRICS)
    with pytest.raises(ValueError, match="appear twice"):
        nodes.combine_calibration_metrics(table, table)


def test_summary_is_nested_json_with_null_for_undefined(calibration_outputs, pairwise_outputs):
    table = nodes.compute_calibration_metrics(calibration_outputs, pairwise_outputs, METHODS, METRICS)
    summary = nodes.summarize_calibration_metrics(nodes.combine_calibration_metrics(table))
    assert summary["base"]["answer"]["all"]["accuracy"]["value"] == pytest.approx(4 / 7)
    assert summary["base"]["answer"]["all"]["accuracy"]["n"] == 7
    assert summary["base"]["stated"]["multiple_choice"]["auroc"]["value"] is None


def test_figures_cover_every_model_including_one_without_parsed_outputs(calibration_outputs, pairwise_outputs):
    silent = calibration_outputs.assign(model="metacog", parsed=False, confidence=np.nan)
    reliability = nodes.plot_reliability_diagrams(10, "stated", calibration_outputs, silent)
    assert isinstance(reliability, Figure) and len(reliability.axes) == 2
    assert "no parseable confidence" in reliability.axes[1].get_title()
    assert isinstance(nodes.plot_risk_coverage("stated", calibration_outputs, silent), Figure)
    table = nodes.compute_calibration_metrics(calibration_outputs, pairwise_outputs, METHODS, METRICS)
    by_domain = nodes.plot_metrics_by_domain(table, "stated")
    assert len([ax for ax in by_domain.axes if ax.get_visible()]) == 10  # one panel per metric


def test_pairwise_differences_compare_auc_on_pairs_both_read_and_parse_rates_on_all(
    calibration_outputs, pairwise_outputs
):
    tuned = pairwise_outputs.assign(model="metacog")
    tuned["preferred"] = pd.array([1, 1, 2, 1], dtype="Int64")  # reads p3 too, which base left unread
    differences = nodes.compare_with_base(
        calibration_outputs.assign(model="metacog"), tuned, calibration_outputs, pairwise_outputs, METHODS, METRICS
    )
    pooled = differences[differences["domain"] == "all"].set_index("metric")
    assert pooled.loc["pairwise_parse_rate_minus_base", "value"] == pytest.approx(1 / 4)  # 4/4 - 3/4
    # On p0-p2, read by both and chosen alike, AUC_a and AUC_c do not differ.
    assert pooled.loc["auc_a_minus_base", "value"] == 0.0 and pooled.loc["auc_c_minus_base", "value"] == 0.0
