"""Layer-profile shape statistics on synthetic PhiID matrices whose answer is known, in both directions.

Synthetic model: 11 layers x 4 heads, 40 prompts. Head i has a synergy level f(i) and a redundancy level
g(i); per prompt, each head gets seeded noise, and the pair (i, j) reads f(i) + f(j) (+ noise of both) for
synergy and g(i) + g(j) for redundancy. With f = h + c and g = -h + c + u, h = -(depth - peak)^2, c a
level common to both and u a fixed random part, the syn-red score (a rank difference) and so the layer
profile rise to a peak at ``peak``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from metasyn.comparison import shape
from metasyn.synergy.scores import head_scores, layer_profile, nanmean

LAYERS, HEADS_PER_LAYER, PROMPTS = 11, 4, 40
HEADS = LAYERS * HEADS_PER_LAYER
DEPTH = np.repeat(np.linspace(0.0, 1.0, LAYERS), HEADS_PER_LAYER)  # depth of each head, layer-major
RESAMPLES, PERMUTATIONS = 100, 200  # permutations resolve p near 0.05; intervals need fewer
NOISE = 0.05  # per-prompt head noise; the prompt mean of a head varies by NOISE / sqrt(40) ~ 0.008


def levels(peak: float | None, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Head synergy and redundancy levels f, g; the profile peaks at depth ``peak`` (flat when None)."""
    rng = np.random.default_rng(seed)
    if peak is None:
        return np.zeros(HEADS), np.zeros(HEADS)
    hump = -((DEPTH - peak) ** 2) + rng.uniform(-0.005, 0.005, HEADS)  # jitter: no tied heads
    # A level common to a head's synergy and redundancy (as in real heads, busy in both) keeps scores off +-43.
    common = rng.normal(0.0, 0.05, HEADS)
    return hump + common, -hump + common + rng.uniform(-0.1, 0.1, HEADS)


def matrices(
    synergy_levels: np.ndarray, redundancy_levels: np.ndarray, noise: float = NOISE, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt (synergy, redundancy) matrices ``(prompts, heads, heads)`` with a NaN diagonal."""
    rng = np.random.default_rng(seed)

    def one(values: np.ndarray) -> np.ndarray:
        per_prompt = values + rng.normal(0.0, noise, (PROMPTS, HEADS))
        pairs = per_prompt[:, :, None] + per_prompt[:, None, :]
        pairs[:, np.arange(HEADS), np.arange(HEADS)] = np.nan
        return pairs

    return one(synergy_levels), one(redundancy_levels)


def shape_test(base, other, **options):
    return shape.profile_shape_test(
        base,
        other,
        HEADS_PER_LAYER,
        n_resamples=options.pop("n_resamples", RESAMPLES),
        seed=0,
        n_permutations=options.pop("n_permutations", PERMUTATIONS),
        **options,
    )


def covers_zero(statistic: dict) -> bool:
    return statistic["ci_low"] <= 0 <= statistic["ci_high"]


@pytest.fixture(scope="module")
def model_a():
    return matrices(*levels(0.5), seed=1)


def test_profile_from_matrices_is_the_layer_profile_of_the_prompt_mean(model_a):
    synergy, redundancy = model_a
    for prompts in (None, np.array([0, 0, 3, 7, 39])):
        chosen = slice(None) if prompts is None else prompts
        expected = layer_profile(
            head_scores(nanmean(synergy[chosen], 0), nanmean(redundancy[chosen], 0), HEADS_PER_LAYER)
        )
        np.testing.assert_allclose(
            shape.profile_from_matrices(synergy, redundancy, HEADS_PER_LAYER, prompts), expected["score"].to_numpy()
        )


def test_resampled_means_are_nanmean_of_the_drawn_prompts(model_a):
    """The weighted prompt means used inside resamples equal nanmean over the drawn prompts, NaN included."""
    synergy, redundancy = (matrix.copy() for matrix in model_a)
    holes = np.random.default_rng(0).random(synergy.shape) < 0.2
    synergy[holes] = np.nan
    redundancy[:, 3, 5] = np.nan  # a pair undefined in every prompt stays undefined
    drawn = np.array([0, 0, 3, 7, 39, 39, 39])
    model = shape._Model((synergy, redundancy))
    assert not model.synergy.by_head  # scattered holes: sums and counts are kept per head pair
    weighted = shape._profile_of_parts(HEADS_PER_LAYER, model.parts(shape._draw_counts(drawn, PROMPTS)))
    np.testing.assert_allclose(weighted, shape.profile_from_matrices(synergy, redundancy, HEADS_PER_LAYER, drawn))


def test_resampled_means_of_whole_prompts_need_only_each_heads_pair_sums(model_a):
    """Where a prompt has all its pairs or none (the truncated PhiID), per-head sums give the same means."""
    synergy, redundancy = (matrix.copy() for matrix in model_a)
    synergy[[3, 20]] = redundancy[[3, 20]] = np.nan  # two prompts without a defined pair
    model = shape._Model((synergy, redundancy))
    assert model.synergy.by_head and model.redundancy.by_head
    for drawn in (np.array([0, 0, 3, 7, 39, 39, 39]), np.array([3, 3, 20])):
        weighted = shape._profile_of_parts(HEADS_PER_LAYER, model.parts(shape._draw_counts(drawn, PROMPTS)))
        expected = shape.profile_from_matrices(synergy, redundancy, HEADS_PER_LAYER, drawn)
        np.testing.assert_allclose(weighted, expected, rtol=1e-12)
        by_pair = shape._Model((synergy, redundancy), by_head=False).parts(shape._draw_counts(drawn, PROMPTS))
        np.testing.assert_allclose(weighted, shape._profile_of_parts(HEADS_PER_LAYER, by_pair), rtol=1e-12)
    assert np.isnan(expected).all()  # only undefined prompts drawn: no profile


def test_peak_depth_is_the_refined_argmax_of_the_3_layer_moving_average():
    depth = np.linspace(0, 1, LAYERS)
    assert shape.peak_depth(1 - np.abs(depth - 0.8)) == pytest.approx(0.8)  # a tent: smoothing keeps its apex
    assert shape.peak_depth(1 - np.abs(depth - 0.45)) == pytest.approx(0.45, abs=0.01)  # between two layers
    assert shape.peak_depth(depth) == 1.0  # rising to the end: the last layer
    # A global quadratic drags this late tent's peak 0.14 later (its vertex is 0.94).
    coefficients = shape.quadratic_fit(1 - np.abs(depth - 0.8))
    assert -coefficients[1] / (2 * coefficients[0]) > 0.9


def test_a_peak_moved_from_depth_half_to_0_8_is_detected(model_a):
    moved = matrices(*levels(0.8), seed=2)
    result = shape_test(model_a, moved, n_resamples=100, n_permutations=100)  # far from the threshold
    print("moved peak:", result)
    assert result["p_value"] < 0.05
    assert result["p_value"] == pytest.approx(1 / 101)  # no permutation came close
    assert 0 < result["peak_shift"]["ci_low"] <= result["peak_shift"]["ci_high"]
    # Planted 0.3; the rank-based late peak is a plateau over depths 0.6 - 1, so its estimate is looser.
    assert result["peak_shift"]["estimate"] == pytest.approx(0.3, abs=0.1)
    assert result["profile_correlation"]["ci_high"] < 0.5
    assert result["n_prompts"] == PROMPTS


def test_identical_models_show_no_shape_change(model_a):
    result = shape_test(model_a, tuple(matrix.copy() for matrix in model_a), n_resamples=20, n_permutations=20)
    assert result["p_value"] == 1.0  # every swap reproduces the observed distance, 0
    assert result["l2_distance"]["estimate"] == 0.0
    assert result["peak_shift"] == {"estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_two_noise_draws_of_one_model_show_no_shape_change(model_a):
    redraw = matrices(*levels(0.5), seed=3)
    result = shape_test(model_a, redraw)
    print("redraw:", result)
    assert result["p_value"] > 0.05
    assert covers_zero(result["peak_shift"])
    assert result["profile_correlation"]["estimate"] > 0.95
    # The subtlety of the docstring: noise alone keeps the distance's interval away from 0.
    assert result["l2_distance"]["ci_low"] > 0


def extreme_heads_moved() -> tuple[
    tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], pd.DataFrame, pd.DataFrame
]:
    """Levels of model A with a synergy outlier, of model B where only the two extreme heads moved, and scores."""
    synergy_levels, redundancy_levels = levels(0.5)
    outlier = int(np.flatnonzero(DEPTH == 0.5)[0])
    synergy_levels[outlier], redundancy_levels[outlier] = synergy_levels.max() + 0.05, redundancy_levels.min() - 0.05

    def scores(synergy: np.ndarray, redundancy: np.ndarray) -> pd.DataFrame:
        return head_scores(np.add.outer(synergy, synergy), np.add.outer(redundancy, redundancy), HEADS_PER_LAYER)

    a_scores = scores(synergy_levels, redundancy_levels)
    most_redundant = a_scores.drop(index=outlier)["syn_red_score"].idxmin()
    moved_synergy, moved_redundancy = synergy_levels.copy(), redundancy_levels.copy()
    # The most redundant head becomes the extreme: least synergistic and most redundant, score -(H - 1).
    moved_synergy[most_redundant] = synergy_levels.min() - 0.05
    moved_redundancy[most_redundant] = redundancy_levels.max() + 0.05
    # The outlier stays most synergistic but drops to score -min(A), keeping the score range: its redundancy
    # rank becomes H + min(A) (3 here), between the 2nd and 3rd least redundant other heads.
    rank = HEADS + int(a_scores.loc[most_redundant, "syn_red_score"])
    others = np.sort(np.delete(moved_redundancy, outlier))
    moved_redundancy[outlier] = (others[rank - 2] + others[rank - 1]) / 2
    return (
        (synergy_levels, redundancy_levels),
        (moved_synergy, moved_redundancy),
        a_scores,
        scores(moved_synergy, moved_redundancy),
    )


def test_moving_only_the_two_extreme_heads_is_not_a_shape_change():
    """Offset artefact of min-max scaling: flagged by a paired t-test over layers, not by the shape test.

    Model A has one synergy outlier X (most synergistic and least redundant, in the peak layer): score +43,
    while the other heads lie in [-41, 33]; the most redundant head Y (depth 0) scores -41. In model B only X
    and Y change: X's redundancy rises so that its score is +41, and Y becomes the extreme (least synergistic,
    most redundant), -43. The score range stays 84 but its minimum falls by 2, so every other head's scaled
    score rises by about 2/84: without noise every layer rises by 0.021 to 0.027 (X and Y, pinned at 1 and
    0, hold their own layers back a little). After centring 0.002 RMS is left, far below the prompt noise of
    the permutation null, so this is genuinely no change of shape, and the test must not report one.
    Over 20 noise draws (seeds 2000 + 2k and 2001 + 2k; the test uses k = 0): shape p > 0.05 in 19 (median
    0.39), paired t-test p < 1e-3 in 17 and < 0.012 in all 20.
    """
    a_levels, b_levels, a_scores, b_scores = extreme_heads_moved()
    assert (a_scores["syn_red_score"].max(), a_scores["syn_red_score"].min()) == (43, -41)
    assert (b_scores["syn_red_score"].max(), b_scores["syn_red_score"].min()) == (41, -43)
    noiseless = [
        shape.profile_from_matrices(*(np.add.outer(v, v)[None] for v in pair), HEADS_PER_LAYER)
        for pair in (a_levels, b_levels)
    ]
    rise = noiseless[1] - noiseless[0]
    assert rise.min() > 0.02 and np.ptp(rise) < 0.01 and shape.shape_distance(*noiseless) < 0.003

    base, other = matrices(*a_levels, seed=2000), matrices(*b_levels, seed=2001)
    profiles = [shape.profile_from_matrices(*m, HEADS_PER_LAYER) for m in (base, other)]
    t_test_p = scipy_stats.ttest_rel(profiles[1], profiles[0]).pvalue
    assert t_test_p < 1e-3  # the artefact-prone paired t-test calls the shift a huge effect

    result = shape_test(base, other)
    print("extreme heads:", result, "t-test p:", t_test_p)
    assert result["mean_offset"]["ci_low"] > 0  # the offset is real and reported ...
    assert result["p_value"] > 0.05  # ... but it is not a change of shape
    assert covers_zero(result["peak_shift"])
    assert result["profile_correlation"]["estimate"] > 0.95


def test_unpaired_prompts_need_no_common_length_but_paired_ones_do(model_a):
    moved = matrices(*levels(0.8), seed=2)
    shorter = tuple(matrix[:30] for matrix in moved)
    with pytest.raises(ValueError, match="same prompts"):
        shape_test(model_a, shorter)
    result = shape_test(model_a, shorter, paired=False, n_resamples=30, n_permutations=30)
    assert result["p_value"] == pytest.approx(1 / 31) and result["peak_shift"]["ci_low"] > 0
    assert (result["n_prompts"], result["n_prompts_other"]) == (PROMPTS, 30)


def test_inverted_u_is_positive_for_a_planted_hump_and_covers_zero_when_flat(model_a):
    hump = shape.inverted_u(*model_a, HEADS_PER_LAYER, n_resamples=RESAMPLES, seed=0)
    # Pure noise: the interval covers 0 in 20 of 20 draws (seeds 100-119) for the quadratic, 19 of 20 for
    # the band contrast; seed 100 is the first of them.
    flat = shape.inverted_u(*matrices(*levels(None), seed=100), HEADS_PER_LAYER, n_resamples=RESAMPLES, seed=0)
    print("hump:", hump, "flat:", flat)
    for name in ("quadratic", "band_contrast"):
        assert hump[name]["ci_low"] > 0
        assert covers_zero(flat[name])
    assert hump["n_prompts"] == flat["n_prompts"] == PROMPTS


def test_inverted_u_statistics_of_an_exact_parabola():
    depth = np.linspace(0, 1, LAYERS)
    quadratic, contrast = shape._inverted_u_statistics(1 - 2 * (depth - 0.5) ** 2)
    assert quadratic == pytest.approx(2.0)
    inside = (depth >= 1 / 3) & (depth <= 2 / 3)  # depths 0.4, 0.5, 0.6
    profile = 1 - 2 * (depth - 0.5) ** 2
    assert contrast == pytest.approx(profile[inside].mean() - profile[~inside].mean())


def divergences_table(gap: np.ndarray, fractions: np.ndarray, prompts: int = 6, repeats: int = 3,
                      noise: float = 0.0, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """An ablation_divergences table: random orders rising linearly (plus per-prompt noise), synergistic_first
    = random mean + gap, redundant_first = random mean - gap, for every prompt."""
    rng = np.random.default_rng(seed)
    rows = []
    for prompt in range(prompts):
        randoms = 0.5 * fractions + rng.normal(0.0, noise, (repeats, len(fractions)))
        curves = [("random", repeat, randoms[repeat]) for repeat in range(repeats)]
        mean = randoms.mean(axis=0)
        curves += [("synergistic_first", 0, mean + gap), ("redundant_first", 0, mean - gap)]
        rows += [
            {"order": order, "repeat": repeat, "fraction": f, "heads_removed": round(f * HEADS),
             "prompt_id": f"p{prompt}", "divergence": d}
            for order, repeat, values in curves for f, d in zip(fractions, values)
        ]  # fmt: skip
    return pd.DataFrame(rows)


def area(table: pd.DataFrame, order: str = "synergistic_first", **options) -> dict:
    return shape.ablation_area_with_interval(
        table, order, n_resamples=options.pop("n_resamples", 50), seed=0, **options
    )


def test_ablation_area_is_zero_at_the_random_mean_and_signed_by_the_gap():
    fractions = np.linspace(0.0, 1.0, 5)
    triangle = np.array([0.0, 0.2, 0.4, 0.2, 0.0])  # trapezoid area 0.25 * (0.2 + 0.4 + 0.2) = 0.2
    flat = area(divergences_table(np.zeros(5), fractions))
    assert flat["estimate"] == 0.0 and flat["ci_low"] == flat["ci_high"] == 0.0
    assert area(divergences_table(triangle, fractions))["estimate"] == pytest.approx(0.2)
    assert area(divergences_table(-triangle, fractions))["estimate"] == pytest.approx(-0.2)
    assert area(divergences_table(triangle, fractions), "redundant_first")["estimate"] == pytest.approx(-0.2)
    # Normalised by the fraction range: the same mean gap over fractions 0 .. 0.5.
    shuffled = divergences_table(np.full(3, 0.1), np.linspace(0.0, 0.5, 3)).sample(frac=1.0, random_state=0)
    assert area(shuffled)["estimate"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no 'random' order"):
        area(divergences_table(triangle, fractions).query("order != 'random'"))


def test_the_ablation_area_interval_covers_zero_for_noise_and_excludes_it_for_a_gap():
    fractions = np.linspace(0.0, 1.0, 5)
    noisy_null = area(divergences_table(np.zeros(5), fractions, prompts=20, noise=0.2), n_resamples=200)
    # Against a resampled random mean the synergistic-first curve (the original mean) can fall either side.
    assert noisy_null["ci_low"] < 0 < noisy_null["ci_high"] and noisy_null["n_random_orders"] == 3
    gap = area(divergences_table(np.full(5, 0.3), fractions, prompts=20, noise=0.2), n_resamples=200)
    assert gap["ci_low"] > 0 and gap["estimate"] == pytest.approx(0.3)


def test_paired_area_changes_are_zero_for_identical_models_and_find_a_larger_gap():
    fractions = np.linspace(0.0, 1.0, 5)
    base = divergences_table(np.full(5, 0.1), fractions, prompts=10, noise=0.05)
    table = shape.ablation_area_changes(
        {"base": base, "same": base, "more": divergences_table(np.full(5, 0.4), fractions, prompts=10, noise=0.05)},
        [("same", "base"), ("more", "base")], n_resamples=100, seed=0,
    )  # fmt: skip
    same = table[table["comparison"] == "same vs base"].set_index("statistic")
    assert (same[["estimate", "ci_low", "ci_high"]] == 0).all().all()
    more = table[table["comparison"] == "more vs base"].set_index("statistic")
    assert more.loc["ablation_area_synergistic_first_change", "estimate"] == pytest.approx(0.3)
    assert more.loc["ablation_area_synergistic_first_change", "ci_low"] > 0
    assert more.loc["ablation_area_redundant_first_change", "ci_high"] < 0
    with pytest.raises(ValueError, match="same prompts"):
        shape.ablation_area_changes({"a": base, "b": base.query("prompt_id != 'p0'")}, [("a", "b")], 10, 0)


def test_split_half_reliability_is_near_one_for_strong_structure_and_near_zero_for_noise():
    strong = shape.split_half_reliability(
        *matrices(*levels(0.5), noise=0.005, seed=6), HEADS_PER_LAYER, n_splits=60, seed=0
    )
    noise = shape.split_half_reliability(*matrices(*levels(None), seed=7), HEADS_PER_LAYER, n_splits=60, seed=0)
    print("strong:", strong, "noise:", noise)
    assert strong["ci_low"] > 0.95 and strong["estimate"] > 0.97
    assert noise["ci_low"] < 0 < noise["ci_high"] and abs(noise["estimate"]) < 0.2
    assert strong["n_prompts"] == noise["n_prompts"] == PROMPTS and strong["n_splits"] == 60


def test_shape_change_table_compares_every_variant_with_base_and_the_control():
    rng = np.random.default_rng(0)
    layers, heads, prompts = 7, 3, 16
    size = layers * heads
    # Redundancy has the same structure in every model (a weak ramp over heads), so only synergy moves.
    ramp = np.arange(size) / size

    def model(peak_layer: int) -> tuple[np.ndarray, np.ndarray]:
        level = -np.abs(np.repeat(np.arange(layers), heads) - peak_layer).astype(float)
        synergy = level[None, :, None] + level[None, None, :] + rng.normal(0, 0.05, (prompts, size, size))
        redundancy = ramp[None, :, None] + ramp[None, None, :] + rng.normal(0, 0.05, (prompts, size, size))
        return synergy, redundancy

    per_prompt = {"base": model(3), "metacog": model(6), "control": model(3)}
    pairs = [("metacog", "base"), ("control", "base"), ("metacog", "control")]
    table = shape.shape_change_table(per_prompt, heads, pairs, n_resamples=40, seed=0)
    assert sorted(set(table["comparison"])) == ["control vs base", "metacog vs base", "metacog vs control"]
    distance = table[table["statistic"] == "l2_distance"].set_index("comparison")
    assert distance.loc["metacog vs base", "p_value"] < 0.05 < distance.loc["control vs base", "p_value"]
    assert table.loc[table["statistic"] != "l2_distance", "p_value"].isna().all()
    assert (table["n_prompts"] == prompts).all()


def test_model_shape_table_has_ablation_areas_only_for_ablated_models():
    rng = np.random.default_rng(1)
    matrices = (rng.normal(size=(8, 6, 6)), rng.normal(size=(8, 6, 6)))
    divergences = divergences_table(np.array([0.0, 0.5]), np.array([0.0, 1.0]))
    table = shape.model_shape_table({"base": matrices, "random_init": matrices}, {"base": divergences}, 2, 20, 0)
    base = table[table["model"] == "base"].set_index("statistic")
    assert base.loc["ablation_area_synergistic_first", "estimate"] == pytest.approx(0.25)
    assert base.loc["ablation_area_redundant_first", "estimate"] == pytest.approx(-0.25)
    assert "3 random orders" in base.loc["ablation_area_redundant_first", "note"]
    # Each row counts its own prompts: the ablation ran on 6 of the 8 synergy prompts.
    assert base["n_prompts"].to_dict() == {
        "inverted_u_quadratic": 8, "inverted_u_band_contrast": 8, "ranking_split_half_reliability": 8,
        "ablation_area_synergistic_first": 6, "ablation_area_redundant_first": 6,
    }  # fmt: skip
    assert not table.loc[table["model"] == "random_init", "statistic"].str.startswith("ablation").any()
    # The same matrices under the same seed: the same resamples, so the same intervals for both models.
    rows = table.set_index(["model", "statistic"])[["estimate", "ci_low", "ci_high"]]
    for statistic in ("inverted_u_quadratic", "inverted_u_band_contrast", "ranking_split_half_reliability"):
        assert rows.loc[("base", statistic)].tolist() == rows.loc[("random_init", statistic)].tolist()


def _mid_boosted(rng, prompts: int, heads: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A random symmetric base model and a copy whose middle layers (2-3 of 6, 2 heads each) gain synergy."""
    synergy, redundancy = (rng.random((prompts, heads, heads)) for _ in range(2))
    base = tuple((matrix + matrix.transpose(0, 2, 1)) / 2 for matrix in (synergy, redundancy))
    boosted = (base[0].copy(), base[1].copy())
    boosted[0][:, 4:8, :] += 1.0
    boosted[0][:, :, 4:8] += 1.0
    return base, boosted


def test_band_score_changes_detect_a_mid_layer_boost_and_are_zero_for_identical_models():
    base, boosted = _mid_boosted(np.random.default_rng(0), 8, 12)
    table = shape.band_score_changes(
        {"base": base, "metacog": boosted, "control": base},
        heads_per_layer=2,
        band=(0.3, 0.7),
        pairs=[("metacog", "base"), ("control", "base"), ("metacog", "control")],
        n_resamples=100,
        seed=0,
    ).set_index("contrast")
    assert table.loc["metacog - base", "estimate"] > 0
    assert table.loc["metacog - base", "ci_low"] > 0  # interval excludes 0
    assert table.loc["control - base", "estimate"] == 0.0
    assert table.loc["control - base", "ci_low"] == table.loc["control - base", "ci_high"] == 0.0
    versus_control = table.loc["(metacog - base) - (control - base)"]
    assert versus_control["reference"] == "control" and versus_control["estimate"] > 0


def test_moving_only_the_two_extreme_heads_does_not_move_the_band_contrast():
    """The band *mean* of the scaled profile rises with every layer (the artefact); the contrast does not."""
    a_levels, b_levels, _, _ = extreme_heads_moved()
    per_prompt = {"base": matrices(*a_levels, seed=2000), "metacog": matrices(*b_levels, seed=2001)}
    table = shape.band_score_changes(per_prompt, HEADS_PER_LAYER, shape.MIDDLE_BAND, [("metacog", "base")], 100, 0)
    profiles = [shape.profile_from_matrices(*per_prompt[model], HEADS_PER_LAYER) for model in ("base", "metacog")]
    middle = [3, 4, 5, 6]  # depths 0.3 - 0.6 of 11 layers
    assert profiles[1][middle].mean() - profiles[0][middle].mean() > 0.01  # the band mean alone would move
    assert covers_zero(table.iloc[0].to_dict())


def test_an_undefined_profile_has_no_p_value_instead_of_the_smallest_one():
    """Every head tied (synergy and redundancy ranks equal) leaves the scaled profile undefined: p is NaN."""
    level = np.linspace(0.0, 1.0, HEADS)
    tied = matrices(level, level, noise=0.0)
    result = shape_test(tied, tied, n_resamples=10, n_permutations=10)
    assert np.isnan(result["l2_distance"]["estimate"]) and np.isnan(result["p_value"])


def test_end_of_sequence_sensitivity_reproduces_full_length_when_nothing_is_cut(model_a):
    moved = matrices(*levels(0.8), seed=2)
    per_prompt = {"base": model_a, "metacog": moved}
    shapes = shape.shape_change_table(per_prompt, HEADS_PER_LAYER, [("metacog", "base")], 30, 0)
    model_shapes = shape.model_shape_table(per_prompt, {}, HEADS_PER_LAYER, 30, 0)
    table = shape.end_of_sequence_sensitivity(shapes, model_shapes, per_prompt, HEADS_PER_LAYER,
                                              [("metacog", "base")], 30, 0).set_index(["subject", "statistic"])  # fmt: skip
    for key in [
        ("metacog vs base", "l2_distance"),
        ("metacog vs base", "peak_shift"),
        ("base", "inverted_u_quadratic"),
    ]:
        row = table.loc[key]
        assert row["truncated_estimate"] == pytest.approx(row["full_estimate"])
        assert row["truncated_ci_low"] == pytest.approx(row["full_ci_low"])  # the same seeded resamples
        assert row["truncated_ci_high"] == pytest.approx(row["full_ci_high"])
        assert row["n_prompts_truncated"] == PROMPTS
    assert np.isnan(table.loc[("metacog vs base", "peak_shift"), "truncated_p_value"])  # p: the distance's only
    # Prompts left with too few steps are NaN and drop out: the count says how many were analysed.
    cut = {model: tuple(np.where(np.arange(PROMPTS)[:, None, None] < 10, m, np.nan) for m in mats)
           for model, mats in per_prompt.items()}  # fmt: skip
    table = shape.end_of_sequence_sensitivity(shapes, model_shapes, cut, HEADS_PER_LAYER, [("metacog", "base")], 30, 0)
    assert (table["n_prompts_truncated"] == 10).all()
    assert table.set_index("statistic").loc["l2_distance", "truncated_p_value"] < 0.05  # the moved peak, still found


def test_natural_end_summary_counts_ended_prompts_per_category():
    ends = pd.DataFrame({"prompt_id": ["a", "b", "c"], "category": ["x", "x", "y"],
                         "natural_end": pd.array([10, None, 30], dtype="Int64"), "steps_used": [10, 40, 30],
                         "analysed": [False, True, True]})  # fmt: skip
    table = shape.natural_end_summary({"base": ends}).set_index("category")
    assert table.loc["x", "ended_share"] == 0.5 and table.loc["x", "median_natural_end"] == 10
    assert table.loc["all", "prompts"] == 3 and table.loc["all", "analysed_share"] == pytest.approx(2 / 3)


def test_cross_half_agreement_matches_within_for_the_same_ranking_and_falls_for_a_new_one(model_a):
    same = matrices(*levels(0.5), seed=9)  # the same head levels, fresh prompt noise
    result = shape.cross_half_agreement(model_a, same, HEADS_PER_LAYER, 40, 0)
    assert result["ci_low"] <= 0 <= result["ci_high"] and abs(result["cross_minus_within"]) < 0.1
    synergy_levels, redundancy_levels = levels(0.5)
    shuffled = np.random.default_rng(3).permutation(HEADS)  # every head gets another head's levels
    scrambled = matrices(synergy_levels[shuffled], redundancy_levels[shuffled], seed=9)
    result = shape.cross_half_agreement(model_a, scrambled, HEADS_PER_LAYER, 40, 0)
    assert result["ci_high"] < -0.3 and result["within_other"] > 0.5  # still reproducible, just different
    with pytest.raises(ValueError, match="same prompts"):
        shape.cross_half_agreement(model_a, tuple(m[:10] for m in same), HEADS_PER_LAYER, 5, 0)


def test_cross_half_agreement_of_an_unchanged_but_noisier_ranking_is_no_change(model_a):
    # The same head levels with 15 times the prompt noise: the ranking is the same, only less reproducible.
    noisier = matrices(*levels(0.5), noise=15 * NOISE, seed=9)
    result = shape.cross_half_agreement(model_a, noisier, HEADS_PER_LAYER, 40, 0)
    assert result["within_other"] < result["within_base"] - 0.5  # measured: 0.33 against 0.99
    assert result["ci_low"] <= 0 <= result["ci_high"] and abs(result["cross_minus_within"]) < 0.05
    # The arithmetic mean of the within values, which the statistic used before, reads this as a change.
    assert result["cross"] - (result["within_base"] + result["within_other"]) / 2 < -0.05


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


def test_areas_are_over_the_last_axis_divided_by_the_fraction_range():
    fractions = np.array([0.2, 0.4, 0.6])
    gaps = np.array(
        [[[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]], [[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0] * 3]]
    )
    # Trapezoids of width 0.2 over a range of 0.4: 1 for a constant 1, 0.5 for a peak of 1 in the middle.
    np.testing.assert_allclose(shape._areas(gaps, fractions), [[1.0, 0.5, 0.5], [0.5, 1.0, 0.0]])


def test_divergence_arrays_fill_a_missing_fraction_and_a_missing_random_order_with_nan():
    table = divergences_table(np.zeros(3), np.array([0.0, 0.5, 1.0]), prompts=2, repeats=2)
    table = table[~((table["order"] == "synergistic_first") & (table["fraction"] == 0.5))]
    table = table[~((table["order"] == "random") & (table["repeat"] == 1) & (table["prompt_id"] == "p0"))]
    chosen, random, fractions, prompts = shape._divergence_arrays(table.iloc[::-1], "synergistic_first")
    assert prompts == ["p0", "p1"] and list(fractions) == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(chosen, [[0.0, np.nan, 0.5], [0.0, np.nan, 0.5]])
    assert random.shape == (2, 2, 3) and random.dtype == float
    np.testing.assert_allclose(random[1], [[np.nan] * 3, [0.0, 0.25, 0.5]])
    np.testing.assert_allclose(random[0], [[0.0, 0.25, 0.5], [0.0, 0.25, 0.5]])


def test_ablation_area_changes_name_each_statistic_its_prompts_and_random_orders():
    fractions = np.linspace(0.0, 1.0, 3)
    tables = {"base": divergences_table(np.zeros(3), fractions, prompts=4), "more": divergences_table(np.full(3, 0.2),
              fractions, prompts=4)}  # fmt: skip
    changes = shape.ablation_area_changes(tables, [("more", "base")], n_resamples=5, seed=0)
    assert changes.to_dict("records") == [
        {"comparison": "more vs base", "statistic": "ablation_area_synergistic_first_change",
         "estimate": pytest.approx(0.2), "ci_low": pytest.approx(0.2), "ci_high": pytest.approx(0.2), "n_prompts": 4,
         "note": "paired over prompts; 3 random orders resampled"},
        {"comparison": "more vs base", "statistic": "ablation_area_redundant_first_change",
         "estimate": pytest.approx(-0.2), "ci_low": pytest.approx(-0.2), "ci_high": pytest.approx(-0.2),
         "n_prompts": 4, "note": "paired over prompts; 3 random orders resampled"},
    ]  # fmt: skip
    empty = shape.ablation_area_changes(tables, [], n_resamples=5, seed=0)
    assert list(empty.columns) == ["comparison", "statistic", "estimate", "ci_low", "ci_high", "n_prompts", "note"]


def test_natural_end_summary_sorts_categories_and_names_the_model():
    ends = pd.DataFrame({"category": ["y", "x", "y"], "natural_end": pd.array([None, 12, 30], dtype="Int64"),
                         "analysed": [True, False, True]})  # fmt: skip
    table = shape.natural_end_summary({"base": ends})
    assert table.to_dict("records") == [
        {"model": "base", "category": "x", "prompts": 1, "ended_share": 1.0, "median_natural_end": 12.0,
         "analysed_share": 0.0},
        {"model": "base", "category": "y", "prompts": 2, "ended_share": 0.5, "median_natural_end": 30.0,
         "analysed_share": 1.0},
        {"model": "base", "category": "all", "prompts": 3, "ended_share": pytest.approx(2 / 3),
         "median_natural_end": 21.0, "analysed_share": pytest.approx(2 / 3)},
    ]  # fmt: skip


def _ranked_prompts(*orders: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, synergy v_h + v_k between heads h and k (so heads rank as v) and a constant redundancy."""
    values = np.array(orders, dtype=float)
    synergy = values[:, :, None] + values[:, None, :]
    heads = values.shape[1]
    synergy[:, np.arange(heads), np.arange(heads)] = np.nan
    redundancy = np.where(np.isnan(synergy), np.nan, 0.0)
    return synergy, redundancy


def test_cross_half_agreement_of_known_rankings_in_one_prompt_halves():
    # Two prompts, one per half. Base ranks the heads 1 2 3, then 2 3 1 (Spearman -0.5); the other model 1 2 3,
    # then 1 3 2 (0.5). Across halves, whichever half comes first, one pair agrees at 0.5 and the other at -0.5.
    base, other = _ranked_prompts((1, 2, 3), (2, 3, 1)), _ranked_prompts((1, 2, 3), (1, 3, 2))
    result = shape.cross_half_agreement(base, other, 1, 4, 0)
    gap = {key: result.pop(key) for key in ("cross_minus_within", "ci_low", "ci_high")}
    assert result == {"cross": pytest.approx(0.0), "within_base": pytest.approx(-0.5),
                      "within_other": pytest.approx(0.5), "n_splits": 4, "n_prompts": 2}  # fmt: skip
    # Base's halves disagree (-0.5): no reliability to attenuate by, so the gap is undefined in every split.
    assert all(np.isnan(value) for value in gap.values())
    # Three prompts: halves of one prompt each, the third left out. Any two of these rankings correlate at -0.5
    # (the mean of two of them ranks the heads against the third, at -1).
    cyclic = _ranked_prompts((1, 2, 3), (2, 3, 1), (3, 1, 2))
    result = shape.cross_half_agreement(cyclic, cyclic, 1, 4, 0)
    assert result["within_base"] == pytest.approx(-0.5) and result["cross"] == pytest.approx(-0.5)
    assert result["n_prompts"] == 3


def test_ablation_area_with_fewer_than_two_fractions_is_undefined():
    table = divergences_table(np.zeros(1), np.array([0.5]), prompts=3)
    result = area(table)
    assert set(result) == {"estimate", "ci_low", "ci_high", "n_prompts", "n_random_orders"}
    assert all(np.isnan(result[key]) for key in ("estimate", "ci_low", "ci_high"))
    assert result["n_prompts"] == 3 and result["n_random_orders"] == 0


def test_paired_ablation_areas_refuse_other_fractions_of_the_same_count():
    base = divergences_table(np.zeros(3), np.array([0.0, 0.5, 1.0]), prompts=2)
    other = divergences_table(np.zeros(3), np.array([0.0, 0.4, 1.0]), prompts=2)
    with pytest.raises(
        ValueError, match=r"^Paired ablation areas need the same prompts and fractions for both models\.$"
    ):
        area(base, reference=other)


def test_the_ablation_interval_resamples_every_prompt():
    # Ten prompts, only the first with a gap (area 1): a resample's mean area is (draws of p0) / 10, so the
    # interval runs from 0 to a few tenths; the estimate is 0.1. Identical random orders: only prompts vary.
    fractions = np.linspace(0.0, 1.0, 3)
    table = divergences_table(np.zeros(3), fractions, prompts=10)
    first = (table["prompt_id"] == "p0") & (table["order"] == "synergistic_first")
    table.loc[first, "divergence"] += 1.0
    result = area(table, n_resamples=200)
    assert result["estimate"] == pytest.approx(0.1) and result["ci_low"] == 0.0
    assert 0.2 <= result["ci_high"] <= 0.5 and round(result["ci_high"] * 10) == pytest.approx(result["ci_high"] * 10)
    assert area(table, n_resamples=200) == result  # seeded


def _first_random_order_higher(repeats: int) -> pd.DataFrame:
    """One prompt; random order 0 lies 0.3 above the others and the chosen order is the random mean: the area is
    0 with all orders, and 0.1 * (1 - k) when a resample draws order 0 k times out of 3."""
    fractions = np.linspace(0.0, 1.0, 3)
    table = divergences_table(np.zeros(3), fractions, prompts=1, repeats=repeats)
    table.loc[(table["order"] == "random") & (table["repeat"] == 0), "divergence"] += 0.3
    table.loc[table["order"] != "random", "divergence"] += 0.3 / repeats
    return table


def test_the_ablation_interval_resamples_every_random_order_alone_and_paired():
    alone = area(_first_random_order_higher(3), n_resamples=200)
    # k = 0 (0.1) in 8/27 of the resamples, k = 3 (-0.2) in 1/27: 2.5% of the 200 lie below -0.1.
    assert alone["estimate"] == pytest.approx(0.0) and alone["ci_high"] == pytest.approx(0.1)
    assert alone["ci_low"] == pytest.approx(-0.2)
    # Against a reference with two identical random orders (area 0 in every resample): the same values.
    reference = divergences_table(np.zeros(3), np.linspace(0.0, 1.0, 3), prompts=1, repeats=2)
    paired = area(_first_random_order_higher(3), n_resamples=200, reference=reference)
    assert paired["estimate"] == pytest.approx(0.0) and paired["ci_high"] == pytest.approx(0.1)
    assert paired["ci_low"] <= -0.1 and paired["n_random_orders"] == 2


def test_band_score_changes_are_the_band_contrasts_of_the_seeded_prompt_resamples():
    from metasyn.comparison.statistics import band_contrast, percentile_interval
    from metasyn.metacognition.calibration import bootstrap_indices

    base, boosted = _mid_boosted(np.random.default_rng(1), 6, 12)
    band = (0.3, 0.7)
    table = shape.band_score_changes({"base": base, "metacog": boosted}, 2, band, [("metacog", "base")], 20, 3)

    def contrast(model, prompts=None):
        return band_contrast(shape.profile_from_matrices(*model, 2, prompts), band)

    changes = np.array([contrast(boosted, drawn) - contrast(base, drawn) for drawn in bootstrap_indices(6, 20, 3)])
    low, high = percentile_interval(changes)
    assert table.to_dict("records") == [
        {"contrast": "metacog - base", "variant": "metacog", "reference": "base",
         "estimate": pytest.approx(contrast(boosted) - contrast(base)), "ci_low": pytest.approx(low),
         "ci_high": pytest.approx(high), "n_prompts": 6, "n_resamples": 20},
    ]  # fmt: skip


def test_cross_half_agreement_is_seeded():
    rng = np.random.default_rng(4)
    first, second = (tuple(rng.random((6, 9, 9)) for _ in range(2)) for _ in range(2))
    result = shape.cross_half_agreement(first, second, 3, 5, 0)
    assert shape.cross_half_agreement(first, second, 3, 5, 0) == result
    assert shape.cross_half_agreement(first, second, 3, 5, 1) != result


def test_spearman_over_heads_finite_in_both_and_undefined_for_fewer_than_three_or_a_constant_side():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning for a constant side: it is never called
        assert shape._spearman(np.array([0.0, 0.5, 1.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
        assert shape._spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 0.0])) == pytest.approx(-1.0)
        assert shape._spearman(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.5)
        assert np.isnan(shape._spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
        assert np.isnan(shape._spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
        assert np.isnan(shape._spearman(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])))


def test_split_half_reliability_of_known_rankings_is_spearman_brown_corrected():
    # Two prompts, one per half, whose rankings correlate at 0.5: corrected 2 * 0.5 / 1.5 = 2/3 in every split.
    known = _ranked_prompts((1, 2, 3), (1, 3, 2))
    assert shape.split_half_reliability(*known, 1, 4, 0) == {
        "estimate": pytest.approx(2 / 3), "ci_low": pytest.approx(2 / 3), "ci_high": pytest.approx(2 / 3),
        "uncorrected": pytest.approx(0.5), "n_splits": 4, "n_prompts": 2,
    }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Three cyclic rankings: any two at -0.5 (one prompt per half, the third left out), corrected to -2.
        cyclic = shape.split_half_reliability(*_ranked_prompts((1, 2, 3), (2, 3, 1), (3, 1, 2)), 1, 4, 0)
        assert cyclic["estimate"] == pytest.approx(-2.0) and cyclic["uncorrected"] == pytest.approx(-0.5)
        # Reversed rankings: r = -1 corrects to -inf, left out without a division warning; nothing is finite.
        reversed_ = shape.split_half_reliability(*_ranked_prompts((1, 2, 3), (3, 2, 1)), 1, 3, 0)
        assert np.isnan([reversed_[key] for key in ("estimate", "ci_low", "ci_high")]).all()
        assert reversed_["uncorrected"] == pytest.approx(-1.0)
        # Every head tied: no correlation at all, and no warning of an empty mean.
        tied = shape.split_half_reliability(*_ranked_prompts((1, 1, 1), (2, 2, 2)), 1, 3, 0)
        assert np.isnan([tied[key] for key in ("estimate", "ci_low", "ci_high", "uncorrected")]).all()
    with pytest.raises(ValueError, match=r"^Split-half reliability needs at least 2 prompts, got 1\.$"):
        shape.split_half_reliability(*_ranked_prompts((1, 2, 3)), 1, 3, 0)
    rng = np.random.default_rng(2)
    noisy = tuple(rng.random((6, 9, 9)) for _ in range(2))
    assert shape.split_half_reliability(*noisy, 3, 5, 0) == shape.split_half_reliability(*noisy, 3, 5, 0)  # seeded


def test_inverted_u_is_the_negated_quadratic_and_the_band_contrast_of_the_seeded_prompt_resamples():
    from metasyn.comparison.statistics import band_contrast, percentile_interval
    from metasyn.metacognition.calibration import bootstrap_indices

    base, _ = _mid_boosted(np.random.default_rng(1), 6, 12)

    def statistics(prompts=None):
        profile = shape.profile_from_matrices(*base, 2, prompts)
        return -np.polyfit(np.linspace(0.0, 1.0, 6), profile, 2)[0], band_contrast(profile, (1 / 3, 2 / 3))

    samples = np.array([statistics(drawn) for drawn in bootstrap_indices(6, 20, 3)])
    result = shape.inverted_u(*base, 2, 20, 3)
    for column, name in enumerate(("quadratic", "band_contrast")):
        low, high = percentile_interval(samples[:, column])
        assert result[name] == {"estimate": pytest.approx(statistics()[column]), "ci_low": pytest.approx(low),
                                "ci_high": pytest.approx(high)}  # fmt: skip
    assert result["n_prompts"] == 6


def test_model_and_shape_change_tables_name_their_statistics_notes_and_columns():
    base, boosted = _mid_boosted(np.random.default_rng(1), 6, 12)
    models = shape.model_shape_table({"base": base}, {}, 2, 5, 0)
    assert models[["model", "statistic", "n_prompts", "note"]].to_dict("records") == [
        {"model": "base", "statistic": "inverted_u_quadratic", "n_prompts": 6, "note": ""},
        {"model": "base", "statistic": "inverted_u_band_contrast", "n_prompts": 6, "note": ""},
        {"model": "base", "statistic": "ranking_split_half_reliability", "n_prompts": 6,
         "note": "interval: 2.5-97.5% over random prompt splits"},
    ]  # fmt: skip
    assert list(models.columns) == ["model", "statistic", "estimate", "ci_low", "ci_high", "n_prompts", "note"]
    assert list(shape.model_shape_table({}, {}, 2, 5, 0).columns) == list(models.columns)
    changes = shape.shape_change_table({"base": base, "metacog": boosted}, 2, [("metacog", "base")], 5, 0)
    assert changes[["comparison", "statistic", "note"]].to_dict("records") == [
        {"comparison": "metacog vs base", "statistic": statistic,
         "note": "judge by p_value (paired permutation over prompts)" if statistic == "l2_distance" else ""}
        for statistic in shape.SHAPE_STATISTICS
    ]  # fmt: skip
    assert list(changes.columns) == shape.SHAPE_TABLE_COLUMNS
    assert list(shape.shape_change_table({}, 2, [], 5, 0).columns) == shape.SHAPE_TABLE_COLUMNS


def test_quadratic_fit_through_three_finite_layers_and_undefined_below_three():
    # Depths 0, 1/3, 2/3, 1; the NaN layer is skipped: -4.5 d^2 + 4.5 d passes through (0, 0), (2/3, 1), (1, 0).
    np.testing.assert_allclose(shape.quadratic_fit(np.array([0.0, np.nan, 1.0, 0.0])), [-4.5, 4.5, 0.0], atol=1e-12)
    undefined = shape.quadratic_fit(np.array([0.0, np.nan, np.nan, 1.0]))
    assert undefined.shape == (3,) and undefined.dtype == float and np.isnan(undefined).all()


def test_mean_offset_and_profile_correlation_over_layers_defined_in_both():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of an empty mean or a constant correlation
        assert shape.mean_offset(np.array([0.0, 1.0, 2.0, np.nan]), np.array([1.0, 2.0, 3.0, 9.0])) == 1.0
        assert np.isnan(shape.mean_offset(np.array([np.nan]), np.array([1.0])))
        assert shape.profile_correlation(np.array([0.0, 0.5, 1.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
        assert shape.profile_correlation(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.5, 0.0])) == pytest.approx(-1.0)
        assert np.isnan(shape.profile_correlation(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
        assert np.isnan(shape.profile_correlation(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
        assert np.isnan(shape.profile_correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])))


def test_the_shape_test_is_seeded_paired_and_unpaired():
    base, boosted = _mid_boosted(np.random.default_rng(1), 6, 12)
    for paired in (True, False):
        first = shape.profile_shape_test(base, boosted, 2, 10, 0, paired=paired, n_permutations=10)
        assert shape.profile_shape_test(base, boosted, 2, 10, 0, paired=paired, n_permutations=10) == first


def _small_models(prompts: tuple[int, int], seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Two random symmetric models of 3 layers x 2 heads with ``prompts`` prompts each (no ties in any mean)."""
    rng = np.random.default_rng(seed)
    models = []
    for n in prompts:
        synergy, redundancy = (rng.random((n, 6, 6)) for _ in range(2))
        models.append(tuple((matrix + matrix.transpose(0, 2, 1)) / 2 for matrix in (synergy, redundancy)))
    return tuple(models)


def _profile(model: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
    return shape.profile_from_matrices(model[0][rows], model[1][rows], 2)


def _matching(profiles: tuple[np.ndarray, np.ndarray], candidates: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    return [
        k for k, (left, right) in enumerate(candidates)
        if np.allclose(profiles[0], left, rtol=0, atol=1e-12) and np.allclose(profiles[1], right, rtol=0, atol=1e-12)
    ]  # fmt: skip


def test_paired_permutations_are_the_two_models_swapped_on_a_subset_of_prompts():
    # Three paired prompts: the null's pseudo-models are (base where not swapped, other where swapped) and the
    # reverse, for one of the 2^3 subsets; over 32 permutations every subset is drawn.
    base, other = _small_models((3, 3))
    candidates = []
    for swap in itertools.product((False, True), repeat=3):
        swap = np.array(swap)
        pseudo = [tuple(np.where(swap[:, None, None], b, a) for a, b in zip(first, second))
                  for first, second in ((base, other), (other, base))]  # fmt: skip
        candidates.append((_profile(pseudo[0], slice(None)), _profile(pseudo[1], slice(None))))
    drawn = [
        _matching(profiles, candidates)
        for profiles in shape._permuted_profiles(shape._Model(base), shape._Model(other), 2, 32, 0, paired=True)
    ]
    assert all(len(match) == 1 for match in drawn)
    assert {match[0] for match in drawn} == set(range(8))


def test_unpaired_permutations_re_split_the_pooled_prompts_into_groups_of_the_original_sizes():
    # Two base prompts and three other prompts: the pseudo-base is any 2 of the 5 pooled prompts and the
    # pseudo-other the remaining 3, one of C(5, 2) = 10 splits; over 40 permutations every split is drawn.
    base, other = _small_models((2, 3))
    pooled = tuple(np.concatenate([b, o]) for b, o in zip(base, other))
    candidates = []
    for chosen in itertools.combinations(range(5), 2):
        rest = np.setdiff1d(np.arange(5), chosen)
        candidates.append((_profile(pooled, np.array(chosen)), _profile(pooled, rest)))
    drawn = [
        _matching(profiles, candidates)
        for profiles in shape._permuted_profiles(shape._Model(base), shape._Model(other), 2, 40, 0, paired=False)
    ]
    assert all(len(match) == 1 for match in drawn)
    assert {match[0] for match in drawn} == set(range(10))


def test_unpaired_resamples_draw_every_prompt_of_both_models():
    weights = list(shape._resample_weights(3, 4, 200, 0, paired=False))
    left, right = (np.array([w[k] for w in weights]) for k in range(2))
    assert (left.sum(axis=1) == 3).all() and (right.sum(axis=1) == 4).all()  # n draws of n prompts each
    assert (left.sum(axis=0) > 0).all() and (right.sum(axis=0) > 0).all()  # every prompt drawn somewhere
    assert not np.array_equal(left[:, :3], right[:, :3])  # independent draws
    paired = list(shape._resample_weights(3, 3, 5, 0, paired=True))
    assert all(np.array_equal(a, b) for a, b in paired)


def test_paired_ablation_interval_with_fewer_reference_orders_resamples_orders_for_every_prompt():
    # Two identical prompts, as _first_random_order_higher: a resample's area is 0.1 * (1 - k) for k draws of
    # order 0 out of 3, against a reference of two identical orders (area 0): estimate 0, interval -0.2 (or
    # -0.1) to 0.1.
    table = _first_random_order_higher(3)
    table = pd.concat([table, table.assign(prompt_id="p1")])
    reference = divergences_table(np.zeros(3), np.linspace(0.0, 1.0, 3), prompts=2, repeats=2)
    paired = area(table, n_resamples=200, reference=reference)
    assert paired["estimate"] == pytest.approx(0.0) and paired["ci_high"] == pytest.approx(0.1)
    assert paired["ci_low"] in (pytest.approx(-0.2), pytest.approx(-0.1))
    assert paired["n_prompts"] == 2 and paired["n_random_orders"] == 2


def test_cross_half_agreement_of_a_model_with_itself_is_within_in_every_split(model_a):
    # The same matrices: cross and both within values are one Spearman per split, so the gap is 0 in every split
    # (the interval [0, 0]) although the within values vary from split to split.
    result = shape.cross_half_agreement(model_a, model_a, HEADS_PER_LAYER, 20, 0)
    assert result["cross"] == result["within_base"] == result["within_other"] < 1
    assert (result["cross_minus_within"], result["ci_low"], result["ci_high"]) == (0.0, 0.0, 0.0)
    within = shape.split_half_reliability(*model_a, HEADS_PER_LAYER, 20, 0)
    assert within["ci_low"] < within["ci_high"]  # split-to-split variation of the same kind of correlation


def test_moving_average_skips_undefined_layers_and_keeps_a_layer_with_one_defined_neighbour():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layer with no defined layer around it is NaN, without a 0/0 warning
        smoothed = shape.moving_average(np.array([0.0, np.nan, 3.0, np.nan, np.nan, np.nan, 6.0]))
    # Layer 0: 0 / 1; 1: (0 + 3) / 2; 2: 3; 3: 3; 4: nothing defined; 5: 6; 6: 6.
    np.testing.assert_array_equal(smoothed, [0.0, 1.5, 3.0, 3.0, np.nan, 6.0, 6.0])
    # One value per layer below three layers too; with two, each layer's window holds both.
    assert shape.moving_average(np.array([2.0])).tolist() == [2.0]
    assert shape.moving_average(np.array([0.0, 1.0])).tolist() == [0.5, 0.5]


def test_peak_depth_refines_a_peak_at_the_second_layer_and_beside_undefined_layers():
    # [0, 3, 3, 0, 0] smooths to [1.5, 2, 2, 1, 0]: the first maximum is layer 1, its neighbours 1.5 and 2, so the
    # vertex lies 0.5 (1.5 - 2) / (1.5 - 4 + 2) = 0.5 layers on: depth 1.5 / 4.
    assert shape.peak_depth(np.array([0.0, 3, 3, 0, 0])) == pytest.approx(1.5 / 4)
    # [nan, nan, nan, 0, 4, 0, 0] smooths to [nan, nan, 0, 2, 4/3, 4/3, 0]: the peak (layer 3) has defined
    # neighbours 0 and 4/3 although layer 1 is undefined: offset 0.5 (0 - 4/3) / (0 - 4 + 4/3) = 1/4, depth
    # 3.25 / 6; mirrored, 2.75 / 6 although layer 5 is undefined.
    profile = np.array([np.nan, np.nan, np.nan, 0, 4, 0, 0])
    assert shape.peak_depth(profile) == pytest.approx(3.25 / 6)
    assert shape.peak_depth(profile[::-1]) == pytest.approx(2.75 / 6)
    # Two layers smooth to a tie (each window holds both): the first, depth 0; one layer lies at depth 0.
    assert shape.peak_depth(np.array([0.0, 1.0])) == 0.0 and shape.peak_depth(np.array([5.0])) == 0.0


def _seeded_p_value(base, other, n_permutations: int, paired: bool) -> float:
    """The shape test's p, recomputed from the null's pseudo-models (checked above by enumeration)."""
    observed = shape.shape_distance(shape.profile_from_matrices(*base, 2), shape.profile_from_matrices(*other, 2))
    models = shape._Model(base), shape._Model(other)
    null = np.array([shape.shape_distance(*pair) for pair in shape._permuted_profiles(*models, 2, n_permutations, 0,
                                                                                       paired)])  # fmt: skip
    defined = null[np.isfinite(null)]
    return (1 + np.sum(defined >= observed - 1e-12)) / (1 + len(defined))


def test_the_shape_p_value_is_over_its_own_count_of_permutations_of_the_pairing():
    base, other = _small_models((6, 6), seed=1)
    p_values = {}
    for paired in (True, False):
        result = shape.profile_shape_test(base, other, 2, 4, 0, paired=paired, n_permutations=30)
        p_values[paired] = _seeded_p_value(base, other, 30, paired)
        assert result["p_value"] == pytest.approx(p_values[paired])
        assert result["n_permutations"] == 30  # not the 4 resamples
    assert p_values[True] != p_values[False]  # the two nulls give different p here: the test tells them apart


def test_no_p_value_when_the_observed_distance_is_undefined_though_permuted_ones_are_defined():
    base, other = _small_models((4, 4))
    tied = tuple(np.ones_like(matrix) for matrix in base)  # every head ties: no profile
    null = [shape.shape_distance(*pair) for pair in
            shape._permuted_profiles(shape._Model(tied), shape._Model(other), 2, 20, 0, True)]  # fmt: skip
    assert np.isfinite(null).any()  # mixing the models' prompts breaks the ties
    result = shape.profile_shape_test(tied, other, 2, 4, 0, n_permutations=20)
    assert np.isnan(result["l2_distance"]["estimate"]) and np.isnan(result["p_value"])
