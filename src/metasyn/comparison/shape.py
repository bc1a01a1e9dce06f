"""Shape of the layer profile: distance, peak shift, correlation and inverted U, with prompt-level uncertainty.

Why this module exists: a per-layer paired t-test on the min-max scaled layer profile is an artefact. The
syn-red scores sum to zero over heads and the scaling is anchored by the two most extreme heads, so moving
one extreme head moves every scaled layer mean by about the same constant; a paired test over layers sees
a tiny spread of differences and reports a huge effect, while a real change of shape (differences of both
signs) leaves it at p ~ 1. Here the profile is compared as a shape (offset removed), uncertainty comes from
resampling prompts (the unit that was sampled), and the distance is tested by permuting models within
prompts.

Peak depth: the profile is smoothed by a 3-layer moving average (each layer with its two neighbours, two at
the ends); the peak is its argmax, refined to sub-layer precision by the vertex of the parabola through the
maximum and its two neighbours (within half a layer; the argmax itself at the first or last layer), divided
by (layers - 1). Local rather than a global quadratic fit, whose vertex a skewed (e.g. late) peak drags
away: an exact tent peaked at depth 0.8 has its fitted-quadratic vertex at 0.94, and the rank-based profile
of a synthetic model peaked at 0.8 had it past 1 (so clipped to 1).

Resampled and permuted prompt means are weighted sums over prompts (weights = how often a prompt is drawn,
or which model a prompt is taken from), so no resample copies the ``(prompts, H, H)`` arrays; the result is
``nanmean`` of the chosen prompts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import integrate
from scipy import stats as scipy_stats

from metasyn.comparison.statistics import band_contrast, percentile_interval
from metasyn.metacognition.calibration import bootstrap_indices
from metasyn.synergy.scores import nanmean, pair_means, profile_scores, ranks_of_scored

Matrices = tuple[np.ndarray, np.ndarray]  # (synergy, redundancy), each (prompts, H, H)
Interval = dict[str, float]
Part = tuple[np.ndarray, np.ndarray | float]  # weighted sum of finite values, weighted count of them
ModelParts = tuple[Part, Part]  # (synergy, redundancy)

MIDDLE_BAND = (1 / 3, 2 / 3)
SHAPE_STATISTICS = ("l2_distance", "peak_shift", "profile_correlation", "mean_offset")


def _prompt_mean(matrices: np.ndarray, prompts: np.ndarray | None) -> np.ndarray:
    """Mean ``(heads, heads)`` matrix over the given prompt indices (repeats count twice), skipping NaN."""
    return nanmean(matrices if prompts is None else matrices[prompts], axis=0)


def _profile_of_head_means(synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int) -> np.ndarray:
    """Layer profile scores (``layer_profile``'s) from each head's mean synergy and redundancy over its pairs."""
    synergy_rank, redundancy_rank = ranks_of_scored(synergy, redundancy)
    layer_of_head = np.arange(len(synergy)) // heads_per_layer
    return profile_scores(synergy_rank - redundancy_rank, layer_of_head, len(synergy) // heads_per_layer)


def _profile_of_means(synergy_mean: np.ndarray, redundancy_mean: np.ndarray, heads_per_layer: int) -> np.ndarray:
    """Layer profile scores of prompt-mean ``(H, H)`` matrices."""
    return _profile_of_head_means(pair_means(synergy_mean), pair_means(redundancy_mean), heads_per_layer)


def profile_from_matrices(
    synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int, prompts: np.ndarray | None = None
) -> np.ndarray:
    """Layer profile (scaled score per layer, as ``layer_profile``) of the prompt-mean matrices."""
    return _profile_of_means(_prompt_mean(synergy, prompts), _prompt_mean(redundancy, prompts), heads_per_layer)


def whole_prompts(matrices: np.ndarray) -> bool:
    """Whether each prompt's head pairs (off the diagonal) are all defined or all undefined."""
    off_diagonal = ~np.eye(matrices.shape[-1], dtype=bool)
    finite = np.isfinite(matrices[:, off_diagonal])
    return bool((finite.all(axis=1) | ~finite.any(axis=1)).all())


class _Weighted:
    """Per-prompt matrices prepared for means under prompt weights.

    A head's score reads only its mean over its pairs. Where every prompt has all its pairs or none
    (``whole_prompts``: full-length PhiID, and the truncated one, which drops whole prompts), that mean under
    prompt weights is a weighted sum of each prompt's per-head pair sums over a weighted count of prompts, so
    a resample costs a ``(prompts, H)`` product instead of a ``(prompts, H, H)`` one (about 100x less). Otherwise
    (``by_head`` False) the weighted sum and count are kept per pair, as ``nanmean`` over the prompts needs.
    """

    def __init__(self, matrices: np.ndarray, by_head: bool) -> None:
        finite = np.isfinite(matrices)
        values = np.where(finite, matrices, 0.0)
        self.by_head = by_head
        if by_head:
            off_diagonal = ~np.eye(matrices.shape[-1], dtype=bool)
            self.values = (values * off_diagonal).sum(axis=2)
            self.finite = finite[:, off_diagonal].all(axis=1) * float(matrices.shape[-1] - 1)
        else:
            self.values = values
            # Without NaN every pair counts every prompt: the count is the weight sum, and no mask is kept.
            self.finite = None if finite.all() else finite.astype(float)

    def parts(self, weights: np.ndarray) -> Part:
        """Weighted sum of the finite values and weighted count of them, per head (``by_head``) or head pair."""
        count = weights.sum() if self.finite is None else np.tensordot(weights, self.finite, axes=1)
        return np.tensordot(weights, self.values, axes=1), count


def _head_means(*parts: Part) -> np.ndarray:
    """Each head's mean over its pairs of the prompt mean pooled from (total, count) parts (NaN where no finite
    value was drawn, as ``nanmean``)."""
    total, count = sum(part[0] for part in parts), sum(part[1] for part in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / count, np.nan)
    return means if means.ndim == 1 else pair_means(means)


class _Model:
    """One model's synergy and redundancy, ready for weighted prompt means (``by_head``: see ``_Weighted``;
    models whose parts are pooled need the same)."""

    def __init__(self, matrices: Matrices, by_head: bool | None = None) -> None:
        if by_head is None:
            by_head = all(whole_prompts(matrix) for matrix in matrices)
        self.synergy, self.redundancy = _Weighted(matrices[0], by_head), _Weighted(matrices[1], by_head)
        self.n_prompts = len(matrices[0])

    def parts(self, weights: np.ndarray) -> ModelParts:
        """(synergy, redundancy) weighted parts for these prompt weights."""
        return self.synergy.parts(weights), self.redundancy.parts(weights)


def _profile_of_parts(heads_per_layer: int, *parts: ModelParts) -> np.ndarray:
    """Layer profile of the prompt mean pooled from (synergy, redundancy) parts of one or two models."""
    return _profile_of_head_means(
        _head_means(*(part[0] for part in parts)), _head_means(*(part[1] for part in parts)), heads_per_layer
    )


def _head_score_of_parts(heads_per_layer: int, parts: ModelParts) -> np.ndarray:
    """Per-head syn-red score of the prompt mean given by one model's (synergy, redundancy) parts."""
    synergy_rank, redundancy_rank = ranks_of_scored(_head_means(parts[0]), _head_means(parts[1]))
    return synergy_rank - redundancy_rank


def _draw_counts(indices: np.ndarray, n_prompts: int) -> np.ndarray:
    """How often each prompt is drawn in one resample: its weight in the resample's mean."""
    return np.bincount(indices, minlength=n_prompts).astype(float)


def depth_of(profile: np.ndarray) -> np.ndarray:
    """Normalised depth of each layer, 0 (first) to 1 (last), as ``layer_profile``."""
    return np.linspace(0.0, 1.0, len(profile))


def quadratic_fit(profile: np.ndarray) -> np.ndarray:
    """Coefficients ``(a, b, c)`` of ``a d^2 + b d + c`` fitted by least squares over finite layers."""
    depth, keep = depth_of(profile), np.isfinite(profile)
    if keep.sum() < 3:
        return np.full(3, np.nan)
    return np.polyfit(depth[keep], profile[keep], 2)


def moving_average(profile: np.ndarray) -> np.ndarray:
    """Mean of each layer and its two neighbours (fewer at the ends, NaN layers skipped)."""
    finite = np.isfinite(profile)
    kernel = np.ones(3)
    # The full convolution without its two outer values: one value per layer for any number of layers (mode
    # "same" returns max(layers, 3) values, so a profile of one or two layers got three).
    totals = np.convolve(np.where(finite, profile, 0.0), kernel)[1:-1]
    counts = np.convolve(finite.astype(float), kernel)[1:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def peak_depth(profile: np.ndarray) -> float:
    """Depth of the maximum of the 3-layer moving average, refined by a parabola through it and its neighbours."""
    smoothed = moving_average(np.asarray(profile, dtype=float))
    if not np.isfinite(smoothed).any():
        return math.nan
    peak = int(np.nanargmax(smoothed))
    offset = 0.0
    if 0 < peak < len(smoothed) - 1 and np.all(np.isfinite(smoothed[peak - 1 : peak + 2])):
        left, middle, right = smoothed[peak - 1 : peak + 2]
        curvature = left - 2 * middle + right
        # Sub-layer vertex of the parabola through the three points; within half a layer since middle is max.
        if curvature < 0:
            offset = 0.5 * (left - right) / curvature
    return float((peak + offset) / max(len(smoothed) - 1, 1))


def _paired_finite(base: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The layers defined in both profiles."""
    keep = np.isfinite(base) & np.isfinite(other)
    return base[keep], other[keep]


def shape_distance(base: np.ndarray, other: np.ndarray) -> float:
    """Root mean square over layers of the difference of the two profiles, each centred on its layer mean.

    Centred because a uniform offset is what moving an extreme (min-max anchor) head does to every scaled
    layer mean; it is not a change of shape. A change of the score range rescales the profile instead, and
    that the distance does see (as it sees a real change of the hump's height).
    """
    base, other = _paired_finite(base, other)
    if not len(base):
        return math.nan
    difference = other - base
    return float(np.sqrt(np.mean((difference - difference.mean()) ** 2)))


def mean_offset(base: np.ndarray, other: np.ndarray) -> float:
    """Mean over layers of ``other - base``: the level change that the shape distance leaves out."""
    base, other = _paired_finite(base, other)
    return float(np.mean(other - base)) if len(base) else math.nan


def profile_correlation(base: np.ndarray, other: np.ndarray) -> float:
    """Pearson correlation of the two profiles over layers defined in both; NaN if either is constant."""
    base, other = _paired_finite(base, other)
    if len(base) < 3 or np.ptp(base) == 0 or np.ptp(other) == 0:
        return math.nan
    return float(np.corrcoef(base, other)[0, 1])


def _shape_statistics(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The ``SHAPE_STATISTICS`` of two profiles, in that order."""
    return np.array(
        [
            shape_distance(base, other),
            peak_depth(other) - peak_depth(base),
            profile_correlation(base, other),
            mean_offset(base, other),
        ]
    )


def _interval(estimate: float, samples: np.ndarray) -> Interval:
    """Estimate with its 95% percentile interval over resamples."""
    low, high = percentile_interval(np.asarray(samples, dtype=float))
    return {"estimate": float(estimate), "ci_low": low, "ci_high": high}


def _resample_weights(
    n_base: int, n_other: int, n_resamples: int, seed: int, paired: bool
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Prompt weights of each resample for the two models: the same draw when paired, independent otherwise."""
    base = bootstrap_indices(n_base, n_resamples, seed)
    # Unpaired models get their own stream, so their resamples are not accidentally aligned.
    other = base if paired else np.random.default_rng([seed, 2]).integers(0, n_other, size=(n_resamples, n_other))
    for left, right in zip(base, other):
        yield _draw_counts(left, n_base), _draw_counts(right, n_other)


def _permuted_profiles(
    base: _Model, other: _Model, heads_per_layer: int, n_permutations: int, seed: int, paired: bool
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Profiles of pairs of pseudo-models under the null that the two models are exchangeable."""
    rng = np.random.default_rng([seed, 1])  # its own stream: not tied to the bootstrap resamples
    for _ in range(n_permutations):
        if paired:
            # Per prompt, swap which model is called base (a sign flip of the paired difference).
            swap = (rng.random(base.n_prompts) < 0.5).astype(float)
            kept_base, swapped_base = base.parts(1 - swap), base.parts(swap)
            kept_other, swapped_other = other.parts(1 - swap), other.parts(swap)
            yield (
                _profile_of_parts(heads_per_layer, kept_base, swapped_other),
                _profile_of_parts(heads_per_layer, swapped_base, kept_other),
            )
        else:
            # Pool the prompts of both models and re-split them at random into groups of the original sizes.
            to_base = np.zeros(base.n_prompts + other.n_prompts)
            to_base[rng.permutation(len(to_base))[: base.n_prompts]] = 1.0
            from_base, from_other = to_base[: base.n_prompts], to_base[base.n_prompts :]
            yield (
                _profile_of_parts(heads_per_layer, base.parts(from_base), other.parts(from_other)),
                _profile_of_parts(heads_per_layer, base.parts(1 - from_base), other.parts(1 - from_other)),
            )


def profile_shape_test(
    base: Matrices,
    other: Matrices,
    heads_per_layer: int,
    n_resamples: int,
    seed: int,
    paired: bool = True,
    n_permutations: int | None = None,
) -> dict[str, Interval | float | int]:
    """Difference of two models' layer profiles as a shape, with prompt-bootstrap intervals and a permutation p.

    ``base`` and ``other`` are (synergy, redundancy) per-prompt matrices ``(prompts, H, H)``. Statistics, each
    ``{"estimate", "ci_low", "ci_high"}`` (95% percentile interval over ``n_resamples`` prompt resamples; when
    ``paired`` both models use the same resampled prompts, scores and profiles recomputed each time):

    - ``l2_distance``: RMS over layers of the difference of the centred profiles (uniform offset removed);
    - ``peak_shift``: peak depth of ``other`` minus that of ``base`` (smoothed argmax, see the module);
    - ``profile_correlation``: Pearson correlation of the two profiles over layers;
    - ``mean_offset``: mean over layers of ``other - base``; reported, but not evidence of a shape change.

    ``p_value`` tests ``l2_distance`` against the null that the models are exchangeable: paired, the models'
    matrices are swapped on a random subset of prompts; unpaired, prompts are pooled and re-split.
    p = (1 + #{null >= observed}) / (1 + n_permutations) over the permutations where the distance is defined,
    NaN when the observed distance is undefined. Use p, not the interval, for the verdict on the
    distance: a distance is never negative and prompt noise alone makes it positive, so its bootstrap interval
    excludes 0 even for identical models.
    """
    n_base, n_other = len(base[0]), len(other[0])
    if paired and n_base != n_other:
        raise ValueError(f"Paired models need the same prompts, got {n_base} and {n_other} prompts.")
    n_permutations = n_resamples if n_permutations is None else n_permutations
    # Their parts are pooled by the permutations, so both keep them alike.
    by_head = all(whole_prompts(matrix) for matrix in (*base, *other))
    left, right = _Model(base, by_head), _Model(other, by_head)
    observed = _shape_statistics(
        profile_from_matrices(*base, heads_per_layer), profile_from_matrices(*other, heads_per_layer)
    )
    samples = np.array(
        [
            _shape_statistics(
                _profile_of_parts(heads_per_layer, left.parts(left_weights)),
                _profile_of_parts(heads_per_layer, right.parts(right_weights)),
            )
            for left_weights, right_weights in _resample_weights(n_base, n_other, n_resamples, seed, paired)
        ]
    ).reshape(n_resamples, len(SHAPE_STATISTICS))
    null = np.array(
        [
            shape_distance(*profiles)
            for profiles in _permuted_profiles(left, right, heads_per_layer, n_permutations, seed, paired)
        ]
    )
    # A small tolerance so that permutations reproducing the observed distance (up to rounding) count as >=.
    # An undefined distance (a profile whose heads all tie) has no p-value; undefined nulls are left out.
    defined = null[np.isfinite(null)]
    exceed = int(np.sum(defined >= observed[0] - 1e-12))
    result: dict[str, Interval | float | int] = {
        name: _interval(observed[k], samples[:, k]) for k, name in enumerate(SHAPE_STATISTICS)
    }
    result["p_value"] = (1 + exceed) / (1 + len(defined)) if np.isfinite(observed[0]) and len(defined) else math.nan
    result["n_permutations"] = n_permutations
    result["n_prompts"] = n_base
    if not paired:
        result["n_prompts_other"] = n_other
    return result


def band_score_changes(
    per_prompt: Mapping[str, Matrices],
    heads_per_layer: int,
    band: tuple[float, float],
    pairs: Sequence[tuple[str, str]],
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Band contrast change of each ``(model, reference)`` pair (``comparison_pairs``), with paired intervals.

    The band contrast (``band_contrast``) of each model's layer profile, recomputed on the same prompt
    resamples for every model, so the intervals are paired. Against a reference other than base the change
    is (model - base) - (reference - base).
    """
    models = {name: _Model(per_prompt[name]) for name in dict.fromkeys(name for pair in pairs for name in pair)}
    n_prompts = models["base"].n_prompts
    weights = [np.ones(n_prompts)] + [
        _draw_counts(drawn, n_prompts) for drawn in bootstrap_indices(n_prompts, n_resamples, seed)
    ]
    # Column 0 is the full sample; every later column one resample, shared by all models.
    contrasts = {
        name: np.array([band_contrast(_profile_of_parts(heads_per_layer, model.parts(w)), band) for w in weights])
        for name, model in models.items()
    }
    rows = []
    for model, reference in pairs:
        change = contrasts[model] - contrasts[reference]
        low, high = percentile_interval(change[1:])
        rows.append({
            # Against the control: (variant - base) - (control - base), the effect beyond fine-tuning as such.
            "contrast": f"{model} - base" if reference == "base" else f"({model} - base) - ({reference} - base)",
            "variant": model, "reference": reference, "estimate": float(change[0]), "ci_low": low, "ci_high": high,
            "n_prompts": n_prompts, "n_resamples": n_resamples,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _inverted_u_statistics(profile: np.ndarray) -> np.ndarray:
    """Negated quadratic coefficient, and middle-band mean minus outside mean, of one profile."""
    return np.array([-quadratic_fit(profile)[0], band_contrast(profile, MIDDLE_BAND)])


def inverted_u(
    synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int, n_resamples: int, seed: int
) -> dict[str, Interval | int]:
    """Inverted-U strength of one model's layer profile, with 95% intervals over prompt resamples.

    ``quadratic``: minus the ``d^2`` coefficient of a least-squares quadratic in normalised depth (positive =
    inverted U, in profile units per unit depth squared). ``band_contrast``: mean profile over depths
    [1/3, 2/3] minus the mean outside it.
    """
    observed = _inverted_u_statistics(profile_from_matrices(synergy, redundancy, heads_per_layer))
    model = _Model((synergy, redundancy))
    samples = np.array(
        [
            _inverted_u_statistics(
                _profile_of_parts(heads_per_layer, model.parts(_draw_counts(prompts, model.n_prompts)))
            )
            for prompts in bootstrap_indices(len(synergy), n_resamples, seed)
        ]
    ).reshape(n_resamples, 2)
    return {
        "quadratic": _interval(observed[0], samples[:, 0]),
        "band_contrast": _interval(observed[1], samples[:, 1]),
        "n_prompts": len(synergy),
    }


def _divergence_arrays(divergences: pd.DataFrame, order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """``order``'s ``(prompts, fractions)`` and random orders' ``(repeats, prompts, fractions)`` divergences."""
    for needed in (order, "random"):
        if needed not in set(divergences["order"]):
            raise ValueError(
                f"Ablation divergences have no {needed!r} order; orders: {sorted(set(divergences['order']))}."
            )
    fractions = np.sort(divergences["fraction"].unique())
    prompts = sorted(divergences["prompt_id"].unique())

    def grid(rows: pd.DataFrame) -> np.ndarray:
        table = rows.pivot_table(index=["repeat", "prompt_id"], columns="fraction", values="divergence")
        table = table.reindex(columns=fractions)
        repeats = sorted(rows["repeat"].unique())
        full = pd.MultiIndex.from_product([repeats, prompts], names=["repeat", "prompt_id"])
        return table.reindex(full).to_numpy(dtype=float).reshape(len(repeats), len(prompts), len(fractions))

    chosen = grid(divergences[divergences["order"] == order]).mean(axis=0)
    return chosen, grid(divergences[divergences["order"] == "random"]), fractions, prompts


def _areas(gaps: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Trapezoid area over the last axis (fractions), divided by the fraction range."""
    return integrate.trapezoid(gaps, fractions, axis=-1) / (fractions[-1] - fractions[0])


def ablation_area_with_interval(
    divergences: pd.DataFrame,
    order: str,
    n_resamples: int,
    seed: int,
    reference: pd.DataFrame | None = None,
) -> dict[str, float | int]:
    """Ablation area of ``order`` (``ablation_area``) from per-prompt divergences, with a 95% interval that
    resamples prompts and random orders; with ``reference`` (another model's divergences on the same prompts)
    the area minus the reference's, prompts resampled jointly (paired).

    Per prompt the gap is the order's divergence minus the mean of the drawn random orders; the estimate is
    the mean over prompts of the gap's area. A model with one random order gets prompt resampling only.
    """
    rng = np.random.default_rng([seed, 4])
    models = [divergences] if reference is None else [divergences, reference]
    arrays = [_divergence_arrays(table, order) for table in models]
    fractions, prompts = arrays[0][2], arrays[0][3]
    if any(len(a[2]) != len(fractions) or not np.allclose(a[2], fractions) or a[3] != prompts for a in arrays):
        raise ValueError("Paired ablation areas need the same prompts and fractions for both models.")
    if len(fractions) < 2:
        return {
            "estimate": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n_prompts": len(prompts),
            "n_random_orders": 0,
        }

    def area(chosen: np.ndarray, random: np.ndarray, prompt_rows: np.ndarray, repeat_rows: np.ndarray) -> float:
        gap = chosen[prompt_rows] - random[repeat_rows][:, prompt_rows].mean(axis=0)
        return float(np.nanmean(_areas(gap, fractions)))

    def statistic(prompt_rows: np.ndarray, repeats: list[np.ndarray]) -> float:
        values = [area(chosen, random, prompt_rows, rows) for (chosen, random, _, _), rows in zip(arrays, repeats)]
        return values[0] if reference is None else values[0] - values[1]

    n_prompts = len(prompts)
    everything = [np.arange(a[1].shape[0]) for a in arrays]

    def drawn_repeats() -> list[np.ndarray]:
        # The k-th random order of both models comes from the same seed: drawn together when they have as many.
        if len({len(rows) for rows in everything}) == 1:
            return [rng.integers(0, len(everything[0]), len(everything[0]))] * len(everything)
        return [rng.integers(0, len(rows), len(rows)) for rows in everything]

    samples = np.array([statistic(rng.integers(0, n_prompts, n_prompts), drawn_repeats()) for _ in range(n_resamples)])
    low, high = percentile_interval(samples)
    return {
        "estimate": statistic(np.arange(n_prompts), everything), "ci_low": low, "ci_high": high,
        "n_prompts": n_prompts, "n_random_orders": int(min(a[1].shape[0] for a in arrays)),
    }  # fmt: skip


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation over heads finite in both; NaN with fewer than 3 or a constant side."""
    first, second = _paired_finite(first, second)
    if len(first) < 3 or np.ptp(first) == 0 or np.ptp(second) == 0:
        return math.nan
    return float(scipy_stats.spearmanr(first, second).statistic)


def split_half_reliability(
    synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int, n_splits: int, seed: int
) -> dict[str, float | int]:
    """Spearman-Brown corrected split-half reliability of the head syn-red scores, over random prompt splits.

    Each split puts half the prompts (n // 2 each; one left out when n is odd, so the halves are equal as
    Spearman-Brown assumes) in each half; the per-half head scores are rank-correlated and corrected by
    2r / (1 + r). ``estimate`` is the mean over splits, ``ci_low``/``ci_high`` the 2.5/97.5 percentiles over
    splits, ``uncorrected`` the mean half-to-half Spearman: how reproducible the model's ranking is across
    prompts. It is not a ceiling for a between-model correlation *on the same prompts*, which shares the
    prompts' own variation; ``cross_half_agreement`` compares like with like.
    """
    n_prompts = len(synergy)
    if n_prompts < 2:
        raise ValueError(f"Split-half reliability needs at least 2 prompts, got {n_prompts}.")
    rng = np.random.default_rng(seed)
    model, half = _Model((synergy, redundancy)), n_prompts // 2
    correlations = np.full(n_splits, np.nan)
    for split in range(n_splits):
        order = rng.permutation(n_prompts)
        first, second = (
            _head_score_of_parts(heads_per_layer, model.parts(_draw_counts(chosen, n_prompts)))
            for chosen in (order[:half], order[half : 2 * half])
        )
        correlations[split] = _spearman(first, second)
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = 2 * correlations / (1 + correlations)
    low, high = percentile_interval(corrected)
    finite = np.isfinite(corrected)
    return {
        "estimate": float(corrected[finite].mean()) if finite.any() else math.nan,
        "ci_low": low,
        "ci_high": high,
        "uncorrected": float(np.nanmean(correlations)) if np.isfinite(correlations).any() else math.nan,
        "n_splits": n_splits,
        "n_prompts": n_prompts,
    }


def cross_half_agreement(
    base: Matrices, other: Matrices, heads_per_layer: int, n_splits: int, seed: int
) -> dict[str, float | int]:
    """Head-ranking agreement across disjoint prompt halves: base on one half against ``other`` on the other
    (``cross``), beside base against itself (``within_base``) and ``other`` against itself (``within_other``).

    Models measured on the same prompts share those prompts' variation, so their full-sample correlation can
    exceed either model's split-half reliability. Across disjoint halves every correlation carries prompt noise:
    with no ranking change, ``cross`` is the geometric mean of the two within values (a correlation between two
    measures of one ranking is attenuated by the square root of the product of their reliabilities, Spearman
    1904); a change makes it smaller. ``cross_minus_within`` is ``cross`` minus that geometric mean (NaN in a
    split where a within value is not positive), with the 2.5/97.5 percentiles over random splits. The
    arithmetic mean would not do: it exceeds the geometric one whenever the two models are not equally
    reproducible (the demo's fine-tunes: 0.55 against base's 0.79), so an unchanged but noisier ranking would
    read as a change.
    """
    if len(base[0]) != len(other[0]):
        raise ValueError(f"Cross-half agreement needs the same prompts, got {len(base[0])} and {len(other[0])}.")
    n_prompts = len(base[0])
    rng = np.random.default_rng([seed, 5])
    models, half = (_Model(base), _Model(other)), n_prompts // 2
    values = np.full((n_splits, 3), np.nan)
    for split in range(n_splits):
        order = rng.permutation(n_prompts)
        halves = [_draw_counts(chosen, n_prompts) for chosen in (order[:half], order[half : 2 * half])]
        (base_a, base_b), (other_a, other_b) = (
            [_head_score_of_parts(heads_per_layer, model.parts(weights)) for weights in halves] for model in models
        )
        cross = np.nanmean([_spearman(base_a, other_b), _spearman(other_a, base_b)])
        values[split] = [cross, _spearman(base_a, base_b), _spearman(other_a, other_b)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # splits where a side was constant
        means = np.nanmean(values, axis=0)
        reliabilities = np.where(values[:, 1:] > 0, values[:, 1:], np.nan)
        gap = values[:, 0] - np.sqrt(reliabilities.prod(axis=1))
    low, high = percentile_interval(gap)
    return {
        "cross": float(means[0]), "within_base": float(means[1]), "within_other": float(means[2]),
        "cross_minus_within": float(np.nanmean(gap)), "ci_low": low, "ci_high": high,
        "n_splits": n_splits, "n_prompts": n_prompts,
    }  # fmt: skip


SHAPE_TABLE_COLUMNS = ["comparison", "statistic", "estimate", "ci_low", "ci_high", "p_value", "n_prompts", "note"]


def shape_change_table(
    per_prompt: Mapping[str, Matrices],
    heads_per_layer: int,
    pairs: Sequence[tuple[str, str]],
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Profile shape change of each ``(model, reference)`` pair (``comparison_pairs``), one row per statistic."""
    rows = []
    for variant, reference in pairs:
        result = profile_shape_test(per_prompt[reference], per_prompt[variant], heads_per_layer, n_resamples, seed)
        for statistic in SHAPE_STATISTICS:
            distance = statistic == "l2_distance"
            rows.append({
                "comparison": f"{variant} vs {reference}", "statistic": statistic, **result[statistic],
                "p_value": result["p_value"] if distance else math.nan, "n_prompts": result["n_prompts"],
                # The distance is never below 0, so its interval cannot contain 0: judge it by the permutation p.
                "note": "judge by p_value (paired permutation over prompts)" if distance else "",
            })  # fmt: skip
    return pd.DataFrame(rows, columns=SHAPE_TABLE_COLUMNS)


ABLATION_ORDERS = ("synergistic_first", "redundant_first")


def model_shape_table(
    per_prompt: Mapping[str, Matrices],
    ablation_divergences: Mapping[str, pd.DataFrame],
    heads_per_layer: int,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Per model: inverted-U strength, split-half reliability of the head ranking, and ablation areas."""
    rows = []
    for model, (synergy, redundancy) in per_prompt.items():
        bend = inverted_u(synergy, redundancy, heads_per_layer, n_resamples, seed)
        reliability = split_half_reliability(synergy, redundancy, heads_per_layer, n_resamples, seed)
        # Each measure with the prompts it was computed on: the ablation may run on a subset of them.
        measures = {
            "inverted_u_quadratic": (bend["quadratic"], len(synergy), ""),
            "inverted_u_band_contrast": (bend["band_contrast"], len(synergy), ""),
            "ranking_split_half_reliability": (
                {key: reliability[key] for key in ("estimate", "ci_low", "ci_high")},
                len(synergy),
                "interval: 2.5-97.5% over random prompt splits",
            ),
        }
        if model in ablation_divergences:
            for order in ABLATION_ORDERS:
                area = ablation_area_with_interval(ablation_divergences[model], order, n_resamples, seed)
                measures[f"ablation_area_{order}"] = (
                    {key: area[key] for key in ("estimate", "ci_low", "ci_high")},
                    area["n_prompts"],
                    f"interval over prompts and {area['n_random_orders']} random orders",
                )
        for statistic, (values, n_prompts, note) in measures.items():
            rows.append({"model": model, "statistic": statistic, **values, "n_prompts": n_prompts, "note": note})
    return pd.DataFrame(rows, columns=["model", "statistic", "estimate", "ci_low", "ci_high", "n_prompts", "note"])


def ablation_area_changes(
    ablation_divergences: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[str, str]], n_resamples: int, seed: int
) -> pd.DataFrame:
    """Ablation area of each ``(model, reference)`` pair's model minus the reference's, paired over prompts."""
    rows = []
    for model, reference in pairs:
        for order in ABLATION_ORDERS:
            change = ablation_area_with_interval(
                ablation_divergences[model], order, n_resamples, seed, reference=ablation_divergences[reference]
            )
            rows.append({
                "comparison": f"{model} vs {reference}", "statistic": f"ablation_area_{order}_change",
                **{key: change[key] for key in ("estimate", "ci_low", "ci_high", "n_prompts")},
                "note": f"paired over prompts; {change['n_random_orders']} random orders resampled",
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["comparison", "statistic", "estimate", "ci_low", "ci_high", "n_prompts", "note"])


SENSITIVITY_COLUMNS = [
    "subject", "statistic", "full_estimate", "full_ci_low", "full_ci_high", "full_p_value",
    "truncated_estimate", "truncated_ci_low", "truncated_ci_high", "truncated_p_value", "n_prompts_truncated",
]  # fmt: skip


def end_of_sequence_sensitivity(
    shape_changes: pd.DataFrame,
    model_shapes: pd.DataFrame,
    truncated: Mapping[str, Matrices],
    heads_per_layer: int,
    pairs: Sequence[tuple[str, str]],
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """The headline shape measures on full-length activity beside the same on each prompt's steps before its
    natural end: each pair's distance (with p) and peak shift, each model's inverted U.

    ``truncated`` holds the per-prompt matrices of the truncated PhiID, NaN for a prompt left with too few
    steps (those prompts drop out of every mean).
    """
    rows = []

    def analysed(matrices: Matrices) -> int:
        return int(np.isfinite(matrices[0]).any(axis=(1, 2)).sum())

    full = shape_changes.set_index(["comparison", "statistic"])
    for model, reference in pairs:
        comparison = f"{model} vs {reference}"
        result = profile_shape_test(truncated[reference], truncated[model], heads_per_layer, n_resamples, seed)
        n = min(analysed(truncated[model]), analysed(truncated[reference]))
        for statistic in ("l2_distance", "peak_shift"):
            before = full.loc[(comparison, statistic)]
            distance = statistic == "l2_distance"
            rows.append([
                comparison, statistic, before["estimate"], before["ci_low"], before["ci_high"], before["p_value"],
                result[statistic]["estimate"], result[statistic]["ci_low"], result[statistic]["ci_high"],
                result["p_value"] if distance else math.nan, n,
            ])  # fmt: skip
    bends = model_shapes[model_shapes["statistic"] == "inverted_u_quadratic"].set_index("model")
    for model, matrices in truncated.items():
        bend = inverted_u(*matrices, heads_per_layer, n_resamples, seed)["quadratic"]
        before = bends.loc[model]
        rows.append([
            model, "inverted_u_quadratic", before["estimate"], before["ci_low"], before["ci_high"], math.nan,
            bend["estimate"], bend["ci_low"], bend["ci_high"], math.nan, analysed(matrices),
        ])  # fmt: skip
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def natural_end_summary(natural_ends: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and prompt category: prompts, share that chose end-of-sequence, median end step, share analysed."""
    rows = []
    for model, table in natural_ends.items():
        for category, group in [*table.groupby("category", sort=True), ("all", table)]:
            ends = group["natural_end"].dropna().astype(float)
            rows.append({
                "model": model, "category": category, "prompts": len(group),
                "ended_share": float(group["natural_end"].notna().mean()),
                "median_natural_end": float(ends.median()) if len(ends) else math.nan,
                "analysed_share": float(group["analysed"].mean()),
            })  # fmt: skip
    return pd.DataFrame(rows)
