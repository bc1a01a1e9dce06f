"""Figures that put the measured models side by side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def layer_profiles_figure(profiles: Mapping[str, pd.DataFrame]) -> Figure:
    """Layer profiles (syn-red score against normalised depth) of every model on one axis."""
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    for model, profile in profiles.items():
        axis.plot(
            profile["depth"],
            profile["score"],
            marker="o",
            markersize=3,
            label=model,
            linestyle="--" if model == "random_init" else "-",
        )
    axis.set(
        xlabel="normalised depth",
        ylabel="syn-red score (min-max scaled, layer mean)",
        title="Layer profiles: does the inverted U shift?",
    )
    axis.legend()
    figure.tight_layout()
    return figure


def score_grid(scores: pd.DataFrame) -> np.ndarray:
    """Per-head syn-red scores as a (layers, heads per layer) grid."""
    return scores.pivot(index="layer", columns="head", values="syn_red_score").to_numpy()


def delta_heatmaps_figure(base: pd.DataFrame, variants: Mapping[str, pd.DataFrame]) -> Figure:
    """Per-head syn-red score change (variant - base), layers x heads, on one symmetric colour scale."""
    deltas = {name: score_grid(scores) - score_grid(base) for name, scores in variants.items()}
    limit = max((np.nanmax(np.abs(delta)) for delta in deltas.values()), default=1.0)
    limit = limit if np.isfinite(limit) and limit > 0 else 1.0
    figure = Figure(figsize=(4.5 * len(deltas), 6))
    axes = figure.subplots(1, len(deltas), squeeze=False)
    for axis, (name, delta) in zip(axes[0], deltas.items()):
        sns.heatmap(
            delta,
            ax=axis,
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            center=0,
            cbar_kws={"label": "syn-red score change (ranks)"},
        )
        axis.set(title=f"{name} - base", xlabel="head", ylabel="layer")
    figure.tight_layout()
    return figure


def ablation_overlay_figure(curves: Mapping[str, pd.DataFrame]) -> Figure:
    """Ablation curves of every model: synergistic-first, redundant-first and random orders."""
    orders = ["synergistic_first", "redundant_first", "random"]
    figure = Figure(figsize=(14, 4))
    axes = figure.subplots(1, len(orders), sharey=True)
    for axis, order in zip(axes, orders):
        for model, table in curves.items():
            rows = table[table["order"] == order]
            axis.plot(rows["fraction"], rows["divergence"], marker="o", markersize=3, label=model)
            if rows["divergence_sd"].notna().any():
                axis.fill_between(
                    rows["fraction"],
                    rows["divergence"] - rows["divergence_sd"],
                    rows["divergence"] + rows["divergence_sd"],
                    alpha=0.15,
                )
        axis.set(title=order.replace("_", " "), xlabel="fraction of heads ablated")
    axes[0].set_ylabel("KL(original || ablated), nats")
    axes[-1].legend()
    figure.tight_layout()
    return figure


def calibration_vs_synergy_figure(changes: pd.DataFrame) -> Figure:
    """Per variant: calibration change (ECE, AUROC) against the synergy band-score change."""
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ["ece", "auroc"]):
        for row in changes.itertuples():
            x, y = row.synergy_change, getattr(row, f"{metric}_change")
            axis.errorbar(
                x,
                y,
                xerr=[[x - row.synergy_ci_low], [row.synergy_ci_high - x]],
                yerr=[[y - getattr(row, f"{metric}_ci_low")], [getattr(row, f"{metric}_ci_high") - y]],
                fmt="o",
                capsize=3,
                label=row.variant,
            )
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set(
            xlabel="mid-layer syn-red score change (variant - base)",
            ylabel=f"{metric.upper()} change",
            title=f"{metric.upper()} vs synergy change",
        )
    axes[1].legend()
    figure.tight_layout()
    return figure
