"""Comparison statistics: base versus each fine-tuned variant, and each variant versus each control.

Unit of resampling: a **prompt** (prompts are the same for every model, so one set of resampled or
sign-flipped prompt indices gives paired intervals and tests for every model); a **head** for the ranking
correlation. Layers are never treated as independent samples: they are summaries of the same heads and the
same prompts (see docs/statistics.md for why the per-layer paired t-test was dropped).

- **Band contrast**: mean layer-profile score over a depth band minus the mean over the layers outside it.
  The profile is min-max scaled by its two most extreme heads, so moving one of them shifts every layer's
  scaled mean by about the same constant; the contrast is blind to that offset, the band mean alone is not.
- **Per-layer raw changes**: per prompt, a layer's synergy (redundancy) is the mean PhiID atom over the pairs
  of its heads with every other head, unscaled; the change is the prompt mean of variant minus base, tested
  by a paired sign-flip permutation over prompts (two-sided), with Benjamini-Hochberg q-values across layers
  (``scipy.stats.false_discovery_control``) and a percentile interval over prompt resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from metasyn.metacognition.calibration import bootstrap_indices


def ranking_correlation(base_scores: pd.DataFrame, variant_scores: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of the per-head syn-red scores of two models (heads scored in both)."""
    merged = base_scores.merge(variant_scores, on="head_index", suffixes=("_base", "_variant"))
    merged = merged.dropna(subset=["syn_red_score_base", "syn_red_score_variant"])
    if len(merged) < 3 or merged["syn_red_score_base"].nunique() < 2 or merged["syn_red_score_variant"].nunique() < 2:
        return {"spearman_rho": np.nan, "spearman_p": np.nan, "n_heads": len(merged)}
    result = scipy_stats.spearmanr(merged["syn_red_score_base"], merged["syn_red_score_variant"])
    return {"spearman_rho": float(result.statistic), "spearman_p": float(result.pvalue), "n_heads": len(merged)}


def band_layers(n_layers: int, band: tuple[float, float]) -> np.ndarray:
    """Layers whose normalised depth lies in ``band`` (inclusive), e.g. (1/3, 2/3) for the middle third."""
    depth = np.arange(n_layers) / max(n_layers - 1, 1)
    return np.flatnonzero((depth >= band[0]) & (depth <= band[1]))


def band_contrast(profile: np.ndarray, band: tuple[float, float]) -> float:
    """Mean profile score over the depth ``band`` minus the mean over the other layers (NaN layers skipped)."""
    profile = np.asarray(profile, dtype=float)
    inside = np.zeros(len(profile), dtype=bool)
    inside[band_layers(len(profile), band)] = True
    finite = np.isfinite(profile)
    if not (inside & finite).any() or not (~inside & finite).any():
        return np.nan
    return float(profile[inside & finite].mean() - profile[~inside & finite].mean())


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, ignoring resamples where the statistic was undefined."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return (np.nan, np.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def comparison_pairs(
    variants: Sequence[str], controls: Sequence[str], replicates: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str]]:
    """``(model, reference)``: every variant against base, every variant that is not a control against each
    control, and every further training-seed replicate of a variant against its first (the between-seed spread)."""
    pairs = [(variant, "base") for variant in variants]
    pairs += [(variant, control) for variant in variants if variant not in controls for control in controls]
    for namespaces in (replicates or {}).values():
        pairs += [(namespace, namespaces[0]) for namespace in namespaces[1:]]
    return pairs


def per_prompt_layer_means(matrices: np.ndarray, heads_per_layer: int) -> np.ndarray:
    """``(prompts, layers)``: per prompt, the mean atom over each layer's heads' pairs with other heads."""
    n_heads = matrices.shape[-1]
    off_diagonal = np.where(np.eye(n_heads, dtype=bool), np.nan, matrices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # degenerate heads: all-NaN rows
        per_head = np.nanmean(off_diagonal, axis=2)
        return np.nanmean(per_head.reshape(len(matrices), n_heads // heads_per_layer, heads_per_layer), axis=2)


def sign_flip_test(differences: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """Two-sided paired permutation p per column of ``(prompts, k)`` differences: signs flipped per prompt.

    p = (1 + #{|mean of flipped| >= |observed mean|}) / (1 + n_permutations); prompts with a NaN difference
    in a column are left out of that column.
    """
    differences = np.asarray(differences, dtype=float)
    finite = np.isfinite(differences)
    values = np.where(finite, differences, 0.0)
    counts = finite.sum(axis=0)
    signs = np.random.default_rng([seed, 3]).choice([-1.0, 1.0], size=(n_permutations, len(differences)))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.abs(values.sum(axis=0) / counts)
        null = np.abs(signs @ values / counts)
    # A small tolerance so that sign patterns reproducing the observed mean (up to rounding) count as >=.
    exceed = (null >= observed - 1e-12).sum(axis=0)
    return np.where(counts > 0, (1 + exceed) / (1 + n_permutations), np.nan)


LAYER_CHANGE_COLUMNS = [
    "comparison", "quantity", "layer", "depth", "estimate", "ci_low", "ci_high", "p_value", "q_value", "n_prompts",
]  # fmt: skip


def layer_quantity_changes(
    per_prompt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    heads_per_layer: int,
    pairs: Sequence[tuple[str, str]],
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Per layer, raw synergy and redundancy change of each ``(model, reference)`` pair (module docstring).

    q-values control the false-discovery rate over the layers of one comparison and quantity.
    """
    rows = []
    for model, reference in pairs:
        for position, quantity in enumerate(("synergy", "redundancy")):
            differences = per_prompt_layer_means(per_prompt[model][position], heads_per_layer) - (
                per_prompt_layer_means(per_prompt[reference][position], heads_per_layer)
            )
            n_prompts, n_layers = differences.shape
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                estimate = np.nanmean(differences, axis=0)
                resampled = np.stack(
                    [
                        np.nanmean(differences[prompts], axis=0)
                        for prompts in bootstrap_indices(n_prompts, n_resamples, seed)
                    ]
                )
            p_values = sign_flip_test(differences, n_resamples, seed)
            q_values = np.full(n_layers, np.nan)
            tested = np.isfinite(p_values)
            if tested.any():
                q_values[tested] = scipy_stats.false_discovery_control(p_values[tested], method="bh")
            for layer in range(n_layers):
                low, high = percentile_interval(resampled[:, layer])
                rows.append({
                    "comparison": f"{model} vs {reference}", "quantity": quantity, "layer": layer,
                    "depth": layer / max(n_layers - 1, 1), "estimate": float(estimate[layer]), "ci_low": low,
                    "ci_high": high, "p_value": float(p_values[layer]), "q_value": float(q_values[layer]),
                    "n_prompts": int(np.isfinite(differences[:, layer]).sum()),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=LAYER_CHANGE_COLUMNS)
