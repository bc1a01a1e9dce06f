"""Comparison statistics against scipy and hand values."""

import warnings

import numpy as np
import pandas as pd
import pytest

from metasyn.comparison import statistics as stats


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


def test_band_contrast_is_band_mean_minus_the_other_layers():
    # Depths 0, 0.2, ..., 1: the band (0.3, 0.7) holds layers 2 and 3.
    assert stats.band_contrast(np.array([0.0, 0.2, 1.0, 0.8, 0.2, 0.0]), (0.3, 0.7)) == pytest.approx(0.9 - 0.1)
    assert stats.band_contrast(np.full(6, 0.4), (0.3, 0.7)) == 0.0
    shifted = np.array([0.0, 0.2, 1.0, 0.8, 0.2, 0.0]) + 0.3  # a uniform offset leaves the contrast alone
    assert stats.band_contrast(shifted, (0.3, 0.7)) == pytest.approx(0.8)


def test_comparison_pairs_add_every_control_contrast_for_every_other_variant():
    assert stats.comparison_pairs(["metacog", "control"], ["control"]) == [
        ("metacog", "base"), ("control", "base"), ("metacog", "control"),
    ]  # fmt: skip
    assert stats.comparison_pairs(["metacog"], []) == [("metacog", "base")]
    variants = ["metacog", "rank1", "shuffled", "flipped"]
    assert stats.comparison_pairs(variants, ["shuffled", "flipped"])[4:] == [
        ("metacog", "shuffled"), ("metacog", "flipped"), ("rank1", "shuffled"), ("rank1", "flipped"),
    ]  # fmt: skip
    replicates = {"metacog": ["metacog", "metacog_seed1", "metacog_seed2"], "control": ["control"]}
    assert stats.comparison_pairs(["metacog", "control"], ["control"], replicates)[3:] == [
        ("metacog_seed1", "metacog"), ("metacog_seed2", "metacog"),
    ]  # fmt: skip


def test_sign_flip_test_detects_a_planted_mean_and_is_uniform_under_the_null():
    rng = np.random.default_rng(0)
    planted = rng.normal(0.5, 1.0, size=(40, 1))  # effect size 0.5 over 40 prompts: t ~ 3.2
    assert stats.sign_flip_test(planted, 999, seed=0)[0] < 0.01
    assert stats.sign_flip_test(-planted, 999, seed=0)[0] < 0.01  # two-sided
    null = rng.normal(0.0, 1.0, size=(40, 400))
    p_values = stats.sign_flip_test(null, 199, seed=0)
    assert 0.02 < np.mean(p_values < 0.05) < 0.09  # about 5% false positives, not more
    assert p_values.min() >= 1 / 200


def test_sign_flip_test_skips_missing_prompts_and_gives_p_one_for_no_difference():
    differences = np.zeros((10, 2))
    differences[:, 1] = np.nan
    p_values = stats.sign_flip_test(differences, 99, seed=0)
    assert p_values[0] == 1.0 and np.isnan(p_values[1])


def _layered(rng, prompts: int, layers: int, heads: int, boost_layer: int | None, boost: float):
    """Per-prompt symmetric (synergy, redundancy) with NaN diagonals; ``boost`` added to one layer's synergy."""
    size = layers * heads
    synergy, redundancy = rng.normal(0, 0.1, (2, prompts, size, size))
    if boost_layer is not None:
        rows = slice(boost_layer * heads, (boost_layer + 1) * heads)
        synergy[:, rows, :] += boost
    for matrix in (synergy, redundancy):
        matrix[:, np.arange(size), np.arange(size)] = np.nan
    return synergy, redundancy


def test_layer_quantity_changes_find_the_boosted_layer_only_and_nothing_between_identical_models():
    rng = np.random.default_rng(0)
    base = _layered(rng, 20, 6, 3, None, 0.0)
    boosted = (base[0].copy(), base[1].copy())
    boosted[0][:, 6:9, :] += 0.05  # layer 2's heads: +0.05 to each of their pairs (prompt noise ~0.1 / sqrt(51))
    table = stats.layer_quantity_changes(
        {"base": base, "metacog": boosted, "control": base},
        heads_per_layer=3,
        pairs=[("metacog", "base"), ("control", "base")],
        n_resamples=199,
        seed=0,
    )
    found = table[table["q_value"] < 0.05]
    assert found[["comparison", "quantity", "layer"]].values.tolist() == [["metacog vs base", "synergy", 2]]
    layer_2 = table[(table["comparison"] == "metacog vs base") & (table["quantity"] == "synergy")].iloc[2]
    assert layer_2["estimate"] == pytest.approx(0.05) and layer_2["ci_low"] > 0
    assert (table["q_value"] >= table["p_value"] - 1e-12).all()
    identical = table[table["comparison"] == "control vs base"]
    assert (identical["estimate"] == 0).all() and (identical["p_value"] == 1).all()
    assert (table["n_prompts"] == 20).all()


def test_per_prompt_layer_means_average_each_heads_pairs_then_the_layer():
    matrices = np.arange(16.0).reshape(1, 4, 4)
    matrices[0, np.arange(4), np.arange(4)] = np.nan
    # Head rows without the diagonal: (1+2+3)/3, (4+6+7)/3, (8+9+11)/3, (12+13+14)/3; two heads per layer.
    np.testing.assert_allclose(stats.per_prompt_layer_means(matrices, 2), [[(2 + 17 / 3) / 2, (28 / 3 + 13) / 2]])


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


def _scores(values, **extra) -> pd.DataFrame:
    return pd.DataFrame({"head_index": range(len(values)), "syn_red_score": values, **extra})


def test_ranking_correlation_known_value_and_p_with_its_head_count():
    # Ranks (1, 2, 3, 4) against (2, 1, 4, 3): rho = 1 - 6 * 4 / (4 * 15) = 0.6; t = 0.6 * sqrt(2 / 0.64) on
    # 2 degrees of freedom gives p = 1 - t / sqrt(t^2 + 2) = 0.4.
    result = stats.ranking_correlation(_scores([0.1, 0.2, 0.3, 0.4]), _scores([2.0, 1.0, 4.0, 3.0]))
    assert result == {"spearman_rho": pytest.approx(0.6), "spearman_p": pytest.approx(0.4), "n_heads": 4}


def test_ranking_correlation_averages_tied_ranks_and_needs_only_three_heads_with_two_values():
    # (1, 1, 2) has ranks (1.5, 1.5, 3): rho with (1, 2, 3) is 1.5 / sqrt(2 * 1.5) = sqrt(3) / 2.
    result = stats.ranking_correlation(_scores([1.0, 1.0, 2.0]), _scores([1.0, 2.0, 3.0]))
    assert result["spearman_rho"] == pytest.approx(np.sqrt(3) / 2) and result["n_heads"] == 3
    result = stats.ranking_correlation(_scores([1.0, 2.0, 3.0]), _scores([1.0, 1.0, 2.0]))
    assert result["spearman_rho"] == pytest.approx(np.sqrt(3) / 2)


def test_ranking_correlation_is_undefined_without_three_heads_or_with_a_constant_model():
    for base, variant, n_heads in [
        ([1.0, 2.0], [1.0, 2.0], 2),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], 3),
        ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0], 3),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # undefined is decided before scipy, which would warn on a constant
            result = stats.ranking_correlation(_scores(base), _scores(variant))
        assert set(result) == {"spearman_rho", "spearman_p", "n_heads"} and result["n_heads"] == n_heads
        assert np.isnan(result["spearman_rho"]) and np.isnan(result["spearman_p"])


def test_ranking_correlation_drops_only_heads_without_a_score():
    base = _scores([1.0, 2.0, np.nan, 4.0, 5.0], syn_red_rank=[np.nan, 1.0, 2.0, 3.0, 4.0])  # NaN elsewhere is kept
    result = stats.ranking_correlation(base, _scores([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert result["n_heads"] == 4 and result["spearman_rho"] == pytest.approx(1.0)


def test_layer_quantity_changes_name_the_redundancy_rows_for_the_redundancy_change():
    rng = np.random.default_rng(1)
    base = _layered(rng, 12, 3, 2, None, 0.0)
    more_redundant = (base[0].copy(), base[1] + 0.2)  # every pair: redundancy +0.2, synergy unchanged
    table = stats.layer_quantity_changes(
        {"base": base, "metacog": more_redundant},
        heads_per_layer=2,
        pairs=[("metacog", "base")],
        n_resamples=99,
        seed=0,
    )
    assert table["quantity"].tolist() == ["synergy"] * 3 + ["redundancy"] * 3
    np.testing.assert_allclose(table["estimate"], [0.0] * 3 + [0.2] * 3, atol=1e-12)


def test_band_contrast_is_undefined_without_finite_layers_inside_or_outside_the_band_and_does_not_warn():
    nan = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty slice is taken
        assert np.isnan(stats.band_contrast(np.array([0.0, 0.2, nan, nan, 0.2, 0.0]), (0.3, 0.7)))  # band all NaN
        assert np.isnan(stats.band_contrast(np.array([nan, nan, 1.0, 0.8, nan, nan]), (0.3, 0.7)))  # outside all NaN
        assert stats.band_contrast(np.array([0.0, nan, 1.0, nan, 0.2, 0.0]), (0.3, 0.7)) == pytest.approx(1.0 - 0.2 / 3)


def test_band_contrast_reads_a_missing_layer_given_as_none_as_undefined():
    assert stats.band_contrast([0.0, None, 1.0, 0.8, None, 0.0], (0.3, 0.7)) == pytest.approx(0.9)


def test_band_layers_of_a_two_layer_model_put_the_second_at_depth_one():
    assert list(stats.band_layers(2, (0.9, 1.0))) == [1]
    assert list(stats.band_layers(1, (0.0, 0.0))) == [0]


def test_per_prompt_layer_means_leave_out_a_heads_pair_with_itself_even_when_it_is_finite():
    matrices = np.arange(16.0).reshape(1, 4, 4)  # a finite diagonal (0, 5, 10, 15) is not a pair of two heads
    np.testing.assert_allclose(stats.per_prompt_layer_means(matrices, 2), [[(2 + 17 / 3) / 2, (28 / 3 + 13) / 2]])


def test_sign_flip_test_leaves_a_missing_prompt_out_as_if_its_difference_were_zero():
    # Column 0 misses prompt 3, column 1 has a zero there: the same sign patterns reach the observed mean.
    differences = np.array([[1.0, 1.0], [2.0, 2.0], [0.5, 0.5], [np.nan, 0.0]])
    p_values = stats.sign_flip_test(differences, 999, seed=0)
    assert p_values[0] == p_values[1]
    # (1, 2, 0.5): only the 2 of 8 sign patterns with all signs equal reach |3.5|, so p is about 1/4 (999 draws:
    # standard error 0.014); were the NaN counted as a 1, 2 of 16 patterns would reach |4.5|: p about 1/8.
    assert 0.2 < p_values[0] < 0.3


def test_sign_flip_test_has_a_p_of_one_for_a_single_prompt_and_is_seeded():
    assert stats.sign_flip_test(np.array([[5.0], [np.nan]]), 99, seed=0).tolist() == [1.0]
    assert stats.sign_flip_test([[5.0], [None]], 99, seed=0).tolist() == [1.0]  # None is a missing prompt too
    noise = np.random.default_rng(2).normal(size=(12, 30))
    np.testing.assert_array_equal(stats.sign_flip_test(noise, 99, seed=5), stats.sign_flip_test(noise, 99, seed=5))


def test_sign_flip_test_gives_nan_for_a_column_without_prompts_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p_values = stats.sign_flip_test(np.array([[np.nan, 1.0], [np.nan, 2.0]]), 9, seed=0)
    assert np.isnan(p_values[0]) and np.isfinite(p_values[1])


def _constant_layers(changes: list[float], prompts: int = 6, heads_per_layer: int = 2):
    """Per-prompt (synergy, redundancy) of base and of a model whose pairs in layer l moved by changes[l]."""
    size = len(changes) * heads_per_layer
    base = np.zeros((2, prompts, size, size))
    moved = base.copy()
    for layer, change in enumerate(changes):
        moved[:, :, layer * heads_per_layer : (layer + 1) * heads_per_layer, :] += change
    return (base[0], base[1]), (moved[0], moved[1])


def test_layer_quantity_changes_of_a_change_equal_on_every_prompt_have_a_zero_width_interval_at_it():
    base, moved = _constant_layers([0.1, 0.3, -0.2])
    table = stats.layer_quantity_changes({"base": base, "m": moved}, 2, [("m", "base")], n_resamples=49, seed=0)
    assert list(table.columns) == stats.LAYER_CHANGE_COLUMNS
    synergy = table[table["quantity"] == "synergy"]
    assert synergy["depth"].tolist() == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(synergy["estimate"], [0.1, 0.3, -0.2])  # the sign of each change kept
    np.testing.assert_allclose(synergy["ci_low"], [0.1, 0.3, -0.2])
    np.testing.assert_allclose(synergy["ci_high"], [0.1, 0.3, -0.2])
    # Six prompts, all with the same sign: only the 2 of 64 all-equal sign patterns reach the mean, p ~ 1/32.
    assert (synergy["p_value"] < 0.1).all() and (synergy["q_value"] >= synergy["p_value"]).all()


def test_layer_quantity_changes_of_two_layers_sit_at_depths_zero_and_one():
    base, moved = _constant_layers([0.1, 0.2])
    table = stats.layer_quantity_changes({"base": base, "m": moved}, 2, [("m", "base")], n_resamples=9, seed=0)
    assert table["depth"].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_layer_quantity_changes_leave_a_layer_without_prompts_untested_and_are_seeded():
    rng = np.random.default_rng(3)
    base = _layered(rng, 10, 3, 2, None, 0.0)
    noisy = _layered(rng, 10, 3, 2, None, 0.0)
    for matrices in noisy:
        matrices[:, 4:6, :] = np.nan  # layer 2's heads undefined on every prompt
        matrices[:, :, 4:6] = np.nan
    per_prompt = {"base": base, "m": noisy}
    table = stats.layer_quantity_changes(per_prompt, 2, [("m", "base")], n_resamples=49, seed=1)
    layer_2 = table[table["layer"] == 2]
    assert layer_2["p_value"].isna().all() and layer_2["q_value"].isna().all() and (layer_2["n_prompts"] == 0).all()
    again = stats.layer_quantity_changes(per_prompt, 2, [("m", "base")], n_resamples=49, seed=1)
    pd.testing.assert_frame_equal(table, again)


def test_layer_quantity_changes_without_pairs_is_an_empty_table_with_its_columns():
    table = stats.layer_quantity_changes({}, 2, [], n_resamples=9, seed=0)
    assert table.empty and list(table.columns) == stats.LAYER_CHANGE_COLUMNS
