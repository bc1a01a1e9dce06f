"""Calibration metrics against hand-computed values on small examples, and the bootstrap's behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve

from metasyn.metacognition.calibration import (
    ALL_DOMAINS,
    Estimate,
    area_under_risk_coverage,
    auroc,
    better_of_pair,
    bootstrap_indices,
    brier_score,
    calibration_bins,
    confidence_task_metrics,
    debiased_squared_calibration_error,
    estimate_with_intervals,
    expected_calibration_error,
    paired_difference,
    pairs_over_questions,
    pairwise_agreement,
    pairwise_task_metrics,
    risk_coverage,
    summarize_by_domain,
)

BOOTSTRAP = {"n_resamples": 200, "confidence_level": 0.95, "seed": 0}


# ---------------------------------------------------------------------------------------------- ECE


@pytest.mark.parametrize("strategy", ["equal_width", "equal_mass"])
def test_perfectly_calibrated_answers_have_zero_ece(strategy):
    # A quarter of the 0.25-confidence answers and three quarters of the 0.75 ones are right.
    confidence = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0, 1, 1, 1, 0]
    assert expected_calibration_error(confidence, correct, 10, strategy) == pytest.approx(0.0)


def test_equal_width_ece_hand_value():
    # Bin [0.9, 1.0]: 4 answers, accuracy 0.5, confidence 0.9 -> 4/6 * 0.4.
    # Bin [0.1, 0.2): 2 answers, accuracy 0, confidence 0.15 -> 2/6 * 0.15.
    confidence = [0.9, 0.9, 0.9, 0.9, 0.15, 0.15]
    correct = [1, 1, 0, 0, 0, 0]
    assert expected_calibration_error(confidence, correct) == pytest.approx(4 / 6 * 0.4 + 2 / 6 * 0.15)


def test_equal_width_bins_put_edges_in_the_upper_bin_and_one_in_the_top_bin():
    bins = calibration_bins([0.0, 0.3, 0.7, 0.8, 1.0], [1, 1, 1, 1, 1], n_bins=10)
    assert bins["count"].tolist() == [1, 0, 0, 1, 0, 0, 0, 1, 1, 1]


def test_equal_mass_ece_hand_value():
    # Quantile edges at 1/3 and 2/3 of [0.1, 0.2, 0.3, 0.4, 0.6, 0.8] are 0.2667 and 0.4667, so the bins
    # are {0.1, 0.2} (acc 0), {0.3, 0.4} (acc 1), {0.6, 0.8} (acc 1): gaps 0.15, 0.65, 0.3, each weight 1/3.
    confidence = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
    correct = [0, 0, 1, 1, 1, 1]
    assert expected_calibration_error(confidence, correct, 3, "equal_mass") == pytest.approx(1.1 / 3)
    # Equal-width bins [0, 1/3), [1/3, 2/3), [2/3, 1] group the same answers differently.
    assert expected_calibration_error(confidence, correct, 3, "equal_width") == pytest.approx(1.6 / 6)


def test_equal_mass_bins_keep_ties_together_so_row_order_does_not_matter():
    confidence = np.array([0.5, 0.5, 0.5, 0.5, 0.9, 0.9])
    correct = np.array([1, 0, 0, 0, 1, 1])
    ece = expected_calibration_error(confidence, correct, 3, "equal_mass")
    # Two bins: the 0.5s (accuracy 0.25) and the 0.9s (accuracy 1): 4/6 * 0.25 + 2/6 * 0.1.
    assert ece == pytest.approx(4 / 6 * 0.25 + 2 / 6 * 0.1)
    reordered = np.array([3, 2, 1, 0, 5, 4])
    assert expected_calibration_error(confidence[reordered], correct[reordered], 3, "equal_mass") == ece


def test_debiased_squared_error_hand_value():
    # Two equal-mass bins. {0.1, 0.1}: accuracy 0, squared gap 0.01, variance term 0. {0.9 x 4}: accuracy 0.5,
    # squared gap 0.16, less 0.5 * 0.5 / 3.
    confidence = [0.1, 0.1, 0.9, 0.9, 0.9, 0.9]
    correct = [0, 0, 1, 1, 0, 0]
    expected = (2 * 0.01 + 4 * (0.16 - 0.25 / 3)) / 6
    assert debiased_squared_calibration_error(confidence, correct, 2) == pytest.approx(expected)


def _calibrated_answers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each question's chance of being answered right, and whether it was."""
    chance = rng.beta(1.5, 2, n)
    return chance, rng.uniform(size=n) < chance


def test_debiased_squared_error_is_zero_on_average_for_a_calibrated_model_where_ece_is_not():
    rng = np.random.default_rng(0)
    debiased, ece = [], []
    for _ in range(300):
        confidence, correct = _calibrated_answers(rng, 153)
        debiased.append(debiased_squared_calibration_error(confidence, correct))
        ece.append(expected_calibration_error(confidence, correct, 10, "equal_mass"))
    assert abs(np.mean(debiased)) < 3 * np.std(debiased) / np.sqrt(300)
    assert np.mean(ece) > 0.07  # the plug-in ECE of a perfectly calibrated model: its noise floor at n = 153


def _fifths(chance: np.ndarray) -> np.ndarray:
    """A calibrated but coarser confidence: the mean chance of the fifth of [0, 1] that the chance lies in."""
    fifth = np.minimum((chance * 5).astype(int), 4)
    return (np.bincount(fifth, weights=chance, minlength=5) / np.maximum(np.bincount(fifth, minlength=5), 1))[fifth]


def _share_of_changes_found(metric, fine, coarse_of, datasets: int, n: int, seed: int) -> float:
    """Over simulated datasets, how often the paired bootstrap interval of metric(fine) - metric(coarse) excludes 0."""
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(datasets):
        chance, correct = _calibrated_answers(rng, n)
        first, second = fine(chance), coarse_of(chance)
        differences = [
            metric(first[items], correct[items]) - metric(second[items], correct[items])
            for items in bootstrap_indices(n, 200, int(rng.integers(1 << 30)))
        ]
        low, high = np.percentile(differences, [2.5, 97.5])
        found += not low <= 0 <= high
    return found / datasets


def test_debiased_squared_error_finds_no_change_between_two_calibrated_models():
    # Both models are calibrated; one states a finer confidence than the other. ECE's upward bias depends on
    # the resolution, so its difference reads as a change in about half the datasets; the debiased one's does not.
    def ece(confidence, correct):
        return expected_calibration_error(confidence, correct, 10, "equal_mass")

    def identity(chance):
        return chance

    assert _share_of_changes_found(debiased_squared_calibration_error, identity, _fifths, 40, 153, 1) <= 0.1
    assert _share_of_changes_found(ece, identity, _fifths, 40, 153, 1) >= 0.3


def test_debiased_squared_error_finds_a_planted_miscalibration():
    # One model is overconfident (its confidence pushed 2x away from 0.5), the other calibrated; 500 questions
    # (at 153, in 16 of 40 datasets: the power of this demo size).
    def overconfident(chance):
        return np.clip(0.5 + 2.0 * (chance - 0.5), 0.01, 0.99)

    def identity(chance):
        return chance

    assert _share_of_changes_found(debiased_squared_calibration_error, overconfident, identity, 20, 500, 2) >= 0.85


def test_calibration_bins_agree_with_scikit_learn_on_interior_values():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.01, 0.99, 300)
    correct = rng.uniform(size=300) < confidence
    bins = calibration_bins(confidence, correct, 10)
    filled = bins[bins["count"] > 0]
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    # scikit-learn's bins are closed on the right, ours on the left: they differ only for values on an edge.
    assert not np.isin(confidence, np.linspace(0, 1, 11)).any()
    np.testing.assert_allclose(filled["accuracy"], accuracy)
    np.testing.assert_allclose(filled["mean_confidence"], mean_confidence)


@pytest.mark.parametrize(
    ("confidence", "correct", "message"),
    [
        ([0.5, 1.2], [1, 0], r"\[0, 1\]"),
        ([0.5, np.nan], [1, 0], "no NaN"),
        ([0.5], [1, 0], "equal length"),
        ([], [], "at least one"),
        ([0.5, 0.5], [0.5, 1], "0/1"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(confidence, correct, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(confidence, correct)


def test_unknown_binning_strategy_is_refused():
    with pytest.raises(ValueError, match="equal_width"):
        expected_calibration_error([0.5], [1], 10, "quantile")


# ------------------------------------------------------------------------------------ Brier and AUROC


def test_brier_hand_value():
    assert brier_score([0.9, 0.6, 0.2], [1, 0, 0]) == pytest.approx((0.01 + 0.36 + 0.04) / 3)


def test_brier_with_one_class_only():
    assert brier_score([0.9, 0.8], [1, 1]) == pytest.approx((0.01 + 0.04) / 2)


def test_constant_confidence_has_auroc_one_half():
    assert auroc([0.7] * 6, [1, 0, 1, 1, 0, 0]) == pytest.approx(0.5)


def test_auroc_hand_value():
    # Correct at 0.9 and 0.7, wrong at 0.8 and 0.6: 3 of the 4 (correct, wrong) pairs are ordered right.
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_auroc_with_one_class_is_nan_with_a_reason(labels):
    assert np.isnan(auroc([0.2, 0.5, 0.9], labels))
    metrics = confidence_task_metrics(np.array([0.2, 0.5, 0.9]), np.array(labels, dtype=bool))
    assert np.isnan(metrics["auroc"].value)
    assert "AUROC needs correct and incorrect answers" in metrics["auroc"].note


# -------------------------------------------------------------------------------------- risk-coverage


def test_risk_coverage_and_aurc_hand_values():
    # Most confident first: right, wrong, right, wrong -> risks 0, 1/2, 1/3, 2/4 at coverage 1/4 .. 1.
    curve = risk_coverage([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0, 1 / 2, 1 / 3, 1 / 2])
    aurc = area_under_risk_coverage([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert aurc == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_tied_confidences_are_kept_or_dropped_together():
    # Threshold 0.9 keeps two answers (one wrong): risk 1/2 over coverage 2/3; then all: risk 1/3 over 1/3.
    curve = risk_coverage([0.9, 0.5, 0.9], [1, 1, 0])
    np.testing.assert_allclose(curve.threshold, [0.9, 0.5])
    np.testing.assert_allclose(curve.coverage, [2 / 3, 1.0])
    assert area_under_risk_coverage([0.9, 0.5, 0.9], [1, 1, 0]) == pytest.approx(2 / 3 * 1 / 2 + 1 / 3 * 1 / 3)
    # With one confidence for everything, AURC is just the error rate.
    assert area_under_risk_coverage([0.6] * 4, [1, 0, 0, 0]) == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------- pairwise


def test_better_of_pair_for_correctness_and_consistency():
    assert better_of_pair([True, True, False, False], [False, True, True, False]).tolist() == [1, 0, 2, 0]
    assert better_of_pair([0.9, 0.4, 0.5], [0.1, 0.6, 0.5]).tolist() == [1, 2, 0]


def test_auc_a_and_auc_c_on_hand_made_pairs():
    choice = np.array([1, 2, 1, 0, 2])
    # Exactly one right in pairs 1-4 (question 1, 1, 2, 1); both right in pair 5.
    by_accuracy = better_of_pair([1, 1, 0, 1, 1], [0, 0, 1, 0, 1])
    # Readable picks in pairs 1-3: right, wrong, wrong -> 1 / 3; pair 4 has no choice and is left out.
    assert pairwise_agreement(choice, by_accuracy) == pytest.approx(1 / 3)
    by_consistency = better_of_pair([0.9, 0.4, 0.5, 0.7, 0.3], [0.1, 0.6, 0.5, 0.2, 0.8])
    # Pair 3 ties, pair 4 unreadable; picks in pairs 1, 2, 5: right, right, right -> 3 / 3.
    assert pairwise_agreement(choice, by_consistency) == pytest.approx(1.0)
    metrics = pairwise_task_metrics(choice, by_accuracy, by_consistency)
    assert metrics["auc_a"] == Estimate(pytest.approx(1 / 3), 3, "")
    assert metrics["auc_c"] == Estimate(1.0, 3, "")
    assert metrics["pairwise_parse_rate"] == Estimate(0.8, 5, "")


def test_unreadable_choices_are_missing_not_chance():
    """A model that never writes a readable choice has no AUC_a at all, not AUC_a = 0.5."""
    metrics = pairwise_task_metrics(np.zeros(6, dtype=int), np.array([1, 2, 1, 2, 1, 2]), np.ones(6, dtype=int))
    assert np.isnan(metrics["auc_a"].value) and metrics["auc_a"].n == 0
    assert metrics["pairwise_parse_rate"].value == 0.0
    # Learning the format alone (always "1") is then 0.5 on these pairs, not a rise from a scored 0.5.
    assert pairwise_task_metrics(np.ones(6, dtype=int), np.array([1, 2, 1, 2, 1, 2]), np.ones(6))["auc_a"].value == 0.5


def test_pairwise_agreement_without_eligible_pairs_is_nan_with_a_reason():
    metrics = pairwise_task_metrics(np.array([1, 2]), np.array([0, 0]), np.array([0, 0]))
    assert np.isnan(metrics["auc_a"].value) and metrics["auc_a"].n == 0
    assert "exactly one" in metrics["auc_a"].note
    assert "differ in consistency" in metrics["auc_c"].note


def test_metrics_on_fewer_items_than_the_minimum_are_undefined_with_the_reason():
    correct = np.array([True, False, True, False, True])
    confidence = np.array([0.9, 0.2, 0.8, np.nan, np.nan])
    metrics = confidence_task_metrics(confidence, correct, min_n=4)
    assert np.isnan(metrics["ece"].value) and metrics["ece"].n == 3
    assert metrics["ece"].note == "only 3 answers with a confidence (minimum 4, calibration.metrics.min_n)"
    assert metrics["accuracy"].value == pytest.approx(0.6)  # method-free: every output counts
    assert np.isfinite(confidence_task_metrics(confidence, correct, min_n=3)["ece"].value)
    pairs = pairwise_task_metrics(np.array([1, 2, 1]), np.array([1, 1, 2]), np.array([1, 1, 1]), min_n=4)
    assert np.isnan(pairs["auc_a"].value) and "only 3 readable pairs" in pairs["auc_a"].note


def test_pairs_over_questions_count_a_pair_as_often_as_both_its_questions_are_drawn():
    seen = []

    def record(rows: np.ndarray) -> dict:
        seen.append(rows.tolist())
        return {}

    # Pairs (0, 1), (1, 2), (0, 2) over three questions.
    estimator = pairs_over_questions(record, [0, 1, 0], [1, 2, 2], 3)
    estimator(np.arange(3))
    estimator(np.array([0, 0, 1]))  # question 0 twice, 1 once, 2 not at all
    assert seen == [[0, 1, 2], [0, 0]]  # pair (0, 1) twice; the pairs with question 2 drop out


def test_pairwise_agreement_refuses_other_codes():
    with pytest.raises(ValueError, match="1, 2, or 0"):
        pairwise_agreement([3], [1])


# ------------------------------------------------------------------------------------ task summaries


def test_confidence_task_metrics_count_unparsed_outputs():
    correct = np.array([True, False, True, False])
    confidence = np.array([0.9, 0.8, np.nan, np.nan])  # the last two outputs could not be parsed
    metrics = confidence_task_metrics(confidence, correct)
    assert metrics["accuracy"] == Estimate(0.5, 4, "")
    assert metrics["parse_rate"] == Estimate(0.5, 4, "")
    # Calibration on the two parsed outputs: bin 0.9 (right, gap 0.1) and bin 0.8 (wrong, gap 0.8).
    assert metrics["ece"].value == pytest.approx((0.1 + 0.8) / 2)
    assert metrics["ece"].n == 2
    assert metrics["brier"].value == pytest.approx((0.01 + 0.64) / 2)


def test_confidence_task_metrics_with_nothing_parsed_are_nan_with_a_reason():
    metrics = confidence_task_metrics(np.array([np.nan, np.nan]), np.array([True, False]))
    assert metrics["accuracy"].value == 0.5
    for name in ("ece", "ece_equal_mass", "brier", "auroc", "aurc"):
        assert np.isnan(metrics[name].value)
        assert metrics[name].n == 0
        assert "no parseable" in metrics[name].note


# ------------------------------------------------------------------------------------------ bootstrap


def _accuracy_estimator(correct: np.ndarray):
    return lambda items: {"accuracy": Estimate(float(correct[items].mean()), len(items))}


def test_bootstrap_is_deterministic_for_a_seed():
    np.testing.assert_array_equal(bootstrap_indices(50, 10, seed=3), bootstrap_indices(50, 10, seed=3))
    assert not np.array_equal(bootstrap_indices(50, 10, seed=3), bootstrap_indices(50, 10, seed=4))
    correct = np.random.default_rng(0).uniform(size=60) < 0.6
    first = estimate_with_intervals(_accuracy_estimator(correct), 60, **BOOTSTRAP)
    again = estimate_with_intervals(_accuracy_estimator(correct), 60, **BOOTSTRAP)
    other = estimate_with_intervals(_accuracy_estimator(correct), 60, **{**BOOTSTRAP, "seed": 1})
    pd.testing.assert_frame_equal(first, again)
    assert (first["ci_low"].item(), first["ci_high"].item()) != (other["ci_low"].item(), other["ci_high"].item())


def test_bootstrap_interval_of_a_proportion_matches_the_normal_approximation():
    correct = np.arange(400) % 2 == 0  # accuracy 0.5, standard error sqrt(0.25 / 400) = 0.025
    table = estimate_with_intervals(_accuracy_estimator(correct), 400, n_resamples=2000, confidence_level=0.95, seed=0)
    assert table["value"].item() == 0.5
    assert table["ci_low"].item() == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01)
    assert table["ci_high"].item() == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)


def test_bootstrap_leaves_undefined_metrics_nan():
    correct = np.ones(10, dtype=bool)
    confidence = np.linspace(0.5, 0.95, 10)
    table = estimate_with_intervals(
        lambda items: confidence_task_metrics(confidence[items], correct[items]), 10, **BOOTSTRAP
    ).set_index("metric")
    assert table.loc["accuracy", ["value", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["auroc", ["value", "ci_low", "ci_high"]].isna().all()
    assert "all 10 answers correct" in table.loc["auroc", "note"]


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    correct = np.random.default_rng(1).uniform(size=80) < 0.5
    same = _accuracy_estimator(correct)
    table = estimate_with_intervals(paired_difference(same, same), 80, **BOOTSTRAP)
    assert table["metric"].item() == "accuracy_minus_base"
    # Paired resampling: both sides see the same questions, so the interval has no width at all.
    assert table[["value", "ci_low", "ci_high"]].to_numpy().tolist() == [[0.0, 0.0, 0.0]]


def test_paired_difference_hand_value():
    base = np.array([True, False, False, False])
    tuned = np.array([True, True, False, False])
    table = estimate_with_intervals(
        paired_difference(_accuracy_estimator(tuned), _accuracy_estimator(base)), 4, **BOOTSTRAP
    )
    assert table["value"].item() == pytest.approx(0.25)
    assert 0.0 <= table["ci_low"].item() <= 0.25 <= table["ci_high"].item() <= 0.75


def test_summarize_by_domain_adds_the_pooled_domain():
    domains = np.array(["arithmetic", "factual", "arithmetic", "factual", "factual"])
    correct = np.array([True, True, False, False, False])
    table = summarize_by_domain(domains, _accuracy_estimator(correct), **BOOTSTRAP)
    assert table["domain"].tolist() == ["arithmetic", "factual", ALL_DOMAINS]
    assert table["value"].tolist() == pytest.approx([0.5, 1 / 3, 0.4])
    assert table["n"].tolist() == [2, 3, 5]


# ------------------------------------------------------------------------------ properties (hypothesis)

hypothesis = pytest.importorskip("hypothesis")  # a dev extra (pyproject.toml)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ANSWERS = st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=40)
# Confidences in hundredths, as models state them: 1 - c keeps distinct values distinct (1 - 1e-190 would be 1.0).
_STATED = st.lists(st.tuples(st.integers(0, 100).map(lambda k: k / 100), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(_ANSWERS, st.integers(1, 12), st.sampled_from(["equal_width", "equal_mass"]))
def test_ece_and_brier_lie_in_zero_one(answers, n_bins, strategy):
    confidence, correct = zip(*answers)
    assert 0.0 <= expected_calibration_error(confidence, correct, n_bins, strategy) <= 1.0
    assert 0.0 <= brier_score(confidence, correct) <= 1.0


@settings(max_examples=60, deadline=None)
@given(_STATED)
def test_auroc_of_the_complement_confidence_is_one_minus_auroc(answers):
    confidence, correct = map(np.asarray, zip(*answers))
    if correct.all() or not correct.any():
        assert np.isnan(auroc(confidence, correct)) and np.isnan(auroc(1 - confidence, correct))
    else:  # reversing the order of the confidences reverses the ROC curve; ties stay ties (averaged ranks)
        assert auroc(1 - confidence, correct) == pytest.approx(1 - auroc(confidence, correct), abs=1e-12)


def test_equal_mass_edges_are_the_quantiles_and_an_edge_opens_the_upper_bin():
    from metasyn.metacognition.calibration import bin_index

    confidence = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    # Quartile edges 0.1, 0.275, 0.45, 0.625, 0.8: two answers per bin.
    assert bin_index(confidence, 4, "equal_mass").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # The median of (0, 0.5, 0.5, 0.5, 1) is 0.5, the one inner edge of two bins: the 0.5s open the upper bin.
    assert bin_index(np.array([0.0, 0.5, 0.5, 0.5, 1.0]), 2, "equal_mass").tolist() == [0, 1, 1, 1, 1]


# ------------------------------------------------------ known answers that the mutation run showed missing

import warnings  # noqa: E402

from metasyn.metacognition.calibration import too_few  # noqa: E402


def test_calibration_bins_have_ten_rows_by_default_even_when_most_are_empty():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # empty bins are NaN without a 0/0 warning
        table = calibration_bins([0.05, 0.15, 0.12], [True, False, True])
    assert list(table.columns) == ["bin", "count", "mean_confidence", "accuracy"]
    assert table["bin"].tolist() == list(range(10)) and table["count"].tolist() == [1, 2] + [0] * 8
    assert table["mean_confidence"][:2].tolist() == pytest.approx([0.05, 0.135]) and table["accuracy"][1] == 0.5
    assert table["accuracy"][2:].isna().all()


def test_confidence_task_metrics_on_one_answer_and_by_default_ten_equal_width_bins():
    # One parsed answer (min_n 1 by default): ECE |1 - 0.8|, Brier 0.04.
    metrics = confidence_task_metrics(np.array([0.8, np.nan]), np.array([True, False]))
    assert metrics["ece"] == Estimate(pytest.approx(0.2), 1, "") and metrics["brier"].value == pytest.approx(0.04)
    assert metrics["accuracy"] == Estimate(0.5, 2) and metrics["parse_rate"] == Estimate(0.5, 2)
    # 0 and 0.095 share the first of ten equal-width bins (with eleven, 0.095 would open the second), while
    # equal-mass bins split them: ECE (|1 - 0.095| + |2 - 1.85|) / 4.
    confidence, correct = np.array([0.0, 0.095, 0.9, 0.95]), np.array([True, False, True, True])
    metrics = confidence_task_metrics(confidence, correct)
    assert metrics["ece"].value == pytest.approx((abs(1 - 0.095) + abs(2 - 1.85)) / 4)
    assert metrics["ece_equal_mass"].value == pytest.approx(
        expected_calibration_error(confidence, correct, 10, "equal_mass")
    )
    assert metrics["ece_equal_mass"].value != pytest.approx(metrics["ece"].value)


def test_too_few_is_silent_at_the_minimum():
    assert too_few(5, 5, "answers") == ""
    assert too_few(4, 5, "answers") == "only 4 answers (minimum 5, calibration.metrics.min_n)"


def test_pairwise_agreement_without_eligible_pairs_is_nan_and_bad_codes_are_named():
    assert np.isnan(pairwise_agreement([0, 1], [1, 0]))
    with pytest.raises(ValueError, match=r"^Pairwise choices and references must be 1, 2, or 0 \(no choice / tie\)\.$"):
        pairwise_agreement([3], [1])


def test_pairwise_task_metrics_compare_only_the_scored_pairs_and_one_pair_is_enough():
    choice, accuracy, consistency = np.array([1, 2, 2]), np.array([1, 1, 2]), np.array([0, 0, 2])
    scored = np.array([True, False, True])  # the second pair is left out: it counts as unread
    metrics = pairwise_task_metrics(choice, accuracy, consistency, scored=scored)
    assert metrics["auc_a"] == Estimate(1.0, 2, "") and metrics["auc_c"] == Estimate(1.0, 1, "")
    assert metrics["pairwise_parse_rate"] == Estimate(1.0, 3)
    none = pairwise_task_metrics(np.array([1, 0]), np.array([1, 1]), np.array([0, 0]), min_n=1)
    assert (
        none["auc_c"].note == "only 0 readable pairs that differ in consistency (minimum 1, calibration.metrics.min_n)"
    )


def test_pairwise_task_metrics_of_no_outputs_have_no_parse_rate_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = pairwise_task_metrics(np.array([], dtype=int), np.array([], dtype=int), np.array([], dtype=int))
    assert np.isnan(metrics["pairwise_parse_rate"].value) and metrics["pairwise_parse_rate"].n == 0


def test_paired_difference_joins_both_notes():
    treated = lambda items: {"m": Estimate(0.5, 3, "ours")}  # noqa: E731
    reference = lambda items: {"m": Estimate(0.2, 4, "theirs")}  # noqa: E731
    assert paired_difference(treated, reference)(np.arange(3)) == {
        "m_minus_base": Estimate(pytest.approx(0.3), 3, "ours; theirs")
    }


def test_bootstrap_interval_is_the_percentile_of_the_seeded_resamples():
    values = np.array([0.0, 1.0, 3.0, 7.0, 20.0])
    mean = lambda items: {"mean": Estimate(float(values[items].mean()), len(items))}  # noqa: E731
    table = estimate_with_intervals(mean, 5, n_resamples=200, confidence_level=0.9, seed=4)
    resampled = values[bootstrap_indices(5, 200, 4)].mean(axis=1)
    assert list(table.columns) == ["metric", "value", "ci_low", "ci_high", "n", "note"]
    assert (table["ci_low"][0], table["ci_high"][0]) == pytest.approx(tuple(np.percentile(resampled, [5, 95])))


def test_bootstrap_arguments_are_checked_at_their_limits():
    mean = lambda items: {"m": Estimate(float(len(items)), len(items))}  # noqa: E731
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^confidence_level must lie in \(0, 1\), e.g. 0.95; got {level}\.$"):
            estimate_with_intervals(mean, 3, n_resamples=10, confidence_level=level, seed=0)
    with pytest.raises(
        ValueError, match=r"^n_resamples must be at least 1 \(1000 or more for a 95% interval\); got 0\.$"
    ):
        estimate_with_intervals(mean, 3, n_resamples=0, confidence_level=0.9, seed=0)
    assert len(estimate_with_intervals(mean, 3, n_resamples=1, confidence_level=0.9, seed=0)) == 1


def test_a_metric_undefined_on_all_items_has_no_interval_even_where_resamples_define_it():
    def estimate(items):  # undefined when every item is there once (the point estimate), 1 on resamples
        return {"m": Estimate(float("nan") if len(set(items)) == len(items) else 1.0, len(items))}

    table = estimate_with_intervals(estimate, 4, n_resamples=20, confidence_level=0.9, seed=0)
    assert list(table.columns) == ["metric", "value", "ci_low", "ci_high", "n", "note"]
    assert np.isnan(table["ci_low"][0]) and np.isnan(table["ci_high"][0])


def test_summarize_by_domain_is_seeded_and_numbers_its_rows():
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=float)
    accuracy = lambda items: {"accuracy": Estimate(float(correct[items].mean()), len(items))}  # noqa: E731
    domains = ["b", "a", "b", "a", "b", "a"]
    first = summarize_by_domain(domains, accuracy, n_resamples=50, confidence_level=0.9, seed=3)
    again = summarize_by_domain(domains, accuracy, n_resamples=50, confidence_level=0.9, seed=3)
    pd.testing.assert_frame_equal(first, again)
    assert first.index.tolist() == [0, 1, 2] and first["domain"].tolist() == ["a", "b", ALL_DOMAINS]


def test_ece_uses_ten_bins_by_default():
    # 0 and 0.095 share the first of ten bins (gap |1 - 0.095| / 2); with eleven they would not.
    assert expected_calibration_error([0.0, 0.095], [True, False]) == pytest.approx(0.905 / 2)


def test_bootstrap_draws_every_item_including_the_first():
    draws = bootstrap_indices(2, 100, 0)
    assert draws.shape == (100, 2) and set(np.unique(draws)) == {0, 1}


def test_bad_calibration_inputs_are_refused_with_the_whole_reason():
    with pytest.raises(
        ValueError, match=r"^Calibration metrics need at least one answer with a stated confidence; got none\.$"
    ):
        brier_score([], [])
    with pytest.raises(
        ValueError, match=r"^confidence must lie in \[0, 1\] \(no NaN\); got values from -0\.5 to 1\.0\. Drop"
    ):
        brier_score([-0.5, 1.0], [True, False])
    with pytest.raises(ValueError, match=r"^correct must hold booleans or 0/1 values\.$"):
        brier_score([0.5], [2])


@settings(max_examples=80, deadline=None)
@given(_STATED)
def test_auroc_and_brier_equal_scikit_learns_with_ties(answers):
    # The rank-sum AUROC and the plain Brier mean replace sklearn's calls for speed only (calibration.auroc).
    from sklearn.metrics import brier_score_loss, roc_auc_score

    confidence, correct = map(np.asarray, zip(*answers))
    assert brier_score(confidence, correct) == pytest.approx(
        brier_score_loss(correct.astype(int), confidence, labels=[0, 1]), abs=1e-12
    )
    if correct.any() and not correct.all():
        assert auroc(confidence, correct) == pytest.approx(roc_auc_score(correct, confidence), abs=1e-12)
