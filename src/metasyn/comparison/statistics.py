"""Comparison statistics: base versus each fine-tuned variant, and metacognition versus control.

Unit of pairing: a **layer** for the layer-profile tests (each layer's mean syn-red score in the base model
and in the variant), a **head** for the ranking correlation, a **prompt** for bootstrap intervals (prompts are
the same for every model, so one set of resampled prompt indices gives paired intervals for every model).
Tests come from scipy; Cohen's d for paired samples (mean difference / SD of differences) has no scipy
function and is computed here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from metasyn.metacognition.calibration import bootstrap_indices
from metasyn.synergy.scores import head_scores, layer_profile


def paired_tests(before: np.ndarray, after: np.ndarray) -> dict[str, float | str]:
    """Paired t-test, Wilcoxon signed-rank and paired Cohen's d of ``after - before``.

    Identical inputs have no variance to test: p = 1 and d = 0 are reported with a note, not a crash.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape:
        raise ValueError(f"Paired samples need equal shapes, got {before.shape} and {after.shape}.")
    keep = np.isfinite(before) & np.isfinite(after)
    difference = after[keep] - before[keep]
    result: dict[str, float | str] = {
        "n": int(keep.sum()),
        "mean_difference": float(np.mean(difference)) if keep.any() else np.nan,
    }
    if keep.sum() < 2:
        return {
            **result,
            "t": np.nan,
            "t_p": np.nan,
            "wilcoxon_w": np.nan,
            "wilcoxon_p": np.nan,
            "cohens_d": np.nan,
            "note": "fewer than 2 paired values",
        }
    if np.allclose(difference, 0.0, atol=0.0):
        return {
            **result,
            "t": 0.0,
            "t_p": 1.0,
            "wilcoxon_w": 0.0,
            "wilcoxon_p": 1.0,
            "cohens_d": 0.0,
            "note": "identical inputs: no difference to test",
        }
    with warnings.catch_warnings():
        # scipy warns about ties/zero differences in small samples; the p-value is still the documented one.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        t_test = scipy_stats.ttest_rel(after[keep], before[keep])
        wilcoxon = scipy_stats.wilcoxon(difference)
    spread = np.std(difference, ddof=1)
    return {
        **result,
        "t": float(t_test.statistic),
        "t_p": float(t_test.pvalue),
        "wilcoxon_w": float(wilcoxon.statistic),
        "wilcoxon_p": float(wilcoxon.pvalue),
        "cohens_d": float(np.mean(difference) / spread) if spread > 0 else float(np.sign(np.mean(difference)) * np.inf),
        "note": "",
    }


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


def band_score(synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int, band: tuple[float, float]) -> float:
    """Mean layer-profile score over a depth band, from prompt-mean synergy and redundancy matrices."""
    profile = layer_profile(head_scores(synergy, redundancy, heads_per_layer))
    return float(profile.iloc[band_layers(len(profile), band)]["score"].mean())


def bootstrap_prompts(
    statistic: Callable[[np.ndarray], float], n_prompts: int, n_resamples: int, seed: int
) -> np.ndarray:
    """``statistic(prompt_indices)`` over seeded resamples of prompts with replacement."""
    return np.array([statistic(prompts) for prompts in bootstrap_indices(n_prompts, n_resamples, seed)])


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, ignoring resamples where the statistic was undefined."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return (np.nan, np.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def band_score_changes(
    per_prompt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    heads_per_layer: int,
    band: tuple[float, float],
    variants: list[str],
    control: str | None,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Band score change (variant - base) per variant, and each variant's change minus the control's.

    ``per_prompt`` maps a model to its (synergy, redundancy) matrices of shape (prompts, heads, heads). Every
    statistic is computed on the same prompt resamples, so the intervals are paired.
    """

    def band_for(model: str, prompts: np.ndarray) -> float:
        synergy, redundancy = per_prompt[model]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices of degenerate heads
            return band_score(
                np.nanmean(synergy[prompts], 0), np.nanmean(redundancy[prompts], 0), heads_per_layer, band
            )

    n_prompts = per_prompt["base"][0].shape[0]
    everything = np.arange(n_prompts)
    rows = []
    for variant in variants:
        contrasts = {f"{variant} - base": (variant, "base")}
        if control is not None and variant != control:
            # (variant - base) - (control - base): the effect beyond fine-tuning as such.
            contrasts[f"({variant} - base) - ({control} - base)"] = (variant, control)
        for label, (left, right) in contrasts.items():

            def change(prompts: np.ndarray, left: str = left, right: str = right) -> float:
                return band_for(left, prompts) - band_for(right, prompts)

            low, high = percentile_interval(bootstrap_prompts(change, n_prompts, n_resamples, seed))
            rows.append(
                {
                    "contrast": label,
                    "variant": variant,
                    "reference": right,
                    "estimate": change(everything),
                    "ci_low": low,
                    "ci_high": high,
                    "n_prompts": n_prompts,
                    "n_resamples": n_resamples,
                }
            )
    return pd.DataFrame(rows)
