"""Comparison statistics against scipy and hand values."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from metasyn.comparison import statistics as stats


def test_paired_tests_match_scipy_and_hand_cohens_d():
    before = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.2])
    after = np.array([0.3, 0.45, 0.5, 0.85, 0.7, 0.1])
    result = stats.paired_tests(before, after)
    difference = after - before
    assert result["t_p"] == pytest.approx(scipy_stats.ttest_rel(after, before).pvalue)
    assert result["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(difference).pvalue)
    assert result["cohens_d"] == pytest.approx(difference.mean() / difference.std(ddof=1))
    assert result["mean_difference"] == pytest.approx(0.55 / 6)  # (0.2 + 0.05 + 0.15 + 0.05 + 0.2 - 0.1) / 6


def test_identical_inputs_report_p_one_without_crashing():
    values = np.array([0.2, 0.5, 0.9])
    result = stats.paired_tests(values, values.copy())
    assert result["t_p"] == 1.0 and result["wilcoxon_p"] == 1.0 and result["cohens_d"] == 0.0
    assert "identical" in result["note"]


def test_paired_tests_skip_nan_pairs_and_reject_mismatched_shapes():
    result = stats.paired_tests(np.array([1.0, np.nan, 2.0]), np.array([1.5, 3.0, np.nan]))
    assert result["n"] == 1 and np.isnan(result["t_p"]) and "fewer than 2" in result["note"]
    with pytest.raises(ValueError, match="equal shapes"):
        stats.paired_tests(np.zeros(3), np.zeros(4))


def test_ranking_correlation_is_one_for_monotone_and_minus_one_for_reversed():
    base = pd.DataFrame({"head_index": range(6), "syn_red_score": [-3.0, -1, 0, 1, 2, 5]})
    same_order = base.assign(syn_red_score=base["syn_red_score"] * 10)
    reversed_order = base.assign(syn_red_score=-base["syn_red_score"])
    assert stats.ranking_correlation(base, same_order)["spearman_rho"] == pytest.approx(1.0)
    assert stats.ranking_correlation(base, reversed_order)["spearman_rho"] == pytest.approx(-1.0)


def test_band_layers_middle_third():
    assert list(stats.band_layers(10, (1 / 3, 2 / 3))) == [3, 4, 5, 6]


def test_percentile_interval_ignores_undefined_resamples():
    low, high = stats.percentile_interval(np.array([np.nan, *np.arange(101.0)]))
    assert (low, high) == pytest.approx((2.5, 97.5))


def _matrices(rng, prompts, heads, boost_mid: float):
    synergy = rng.random((prompts, heads, heads))
    redundancy = rng.random((prompts, heads, heads))
    synergy[:, 4:8, :] += boost_mid  # layers 2-3 of 6 (2 heads per layer): the middle band
    synergy = (synergy + synergy.transpose(0, 2, 1)) / 2
    redundancy = (redundancy + redundancy.transpose(0, 2, 1)) / 2
    return synergy, redundancy


def test_band_score_changes_detect_a_mid_layer_boost_and_are_zero_for_identical_models():
    rng = np.random.default_rng(0)
    base = _matrices(rng, 8, 12, 0.0)
    boosted = (base[0].copy(), base[1].copy())
    boosted[0][:, 4:8, :] += 1.0
    boosted[0][:, :, 4:8] += 1.0
    table = stats.band_score_changes(
        {"base": base, "metacog": boosted, "control": base},
        heads_per_layer=2,
        band=(0.3, 0.7),
        variants=["metacog", "control"],
        control="control",
        n_resamples=100,
        seed=0,
    ).set_index("contrast")
    assert table.loc["metacog - base", "estimate"] > 0
    assert table.loc["metacog - base", "ci_low"] > 0  # interval excludes 0
    assert table.loc["control - base", "estimate"] == 0.0
    versus_control = table.loc["(metacog - base) - (control - base)"]
    assert versus_control["reference"] == "control" and versus_control["estimate"] > 0
