"""Figures of the synergy analysis: PhiID matrices, per-head scores, the layer profile and ablation curves.

Builders return ``matplotlib.figure.Figure`` objects made without pyplot, so they hold no global state; the
catalog (``matplotlib.MatplotlibDataset``) writes them. Inputs follow the schemas in ``metasyn.synergy`` (the package docstring).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ORDER_STYLES = {
    "synergistic_first": {"color": "tab:red", "label": "synergistic first"},
    "redundant_first": {"color": "tab:blue", "label": "redundant first"},
    "random": {"color": "tab:gray", "label": "random (mean ± SD)"},
}


def _layer_ticks(axis, heads_per_layer: int, layers: int) -> None:
    """Mark every few layers along both axes of a head-by-head matrix."""
    step = max(1, layers // 10)
    ticks = np.arange(0, layers, step)
    for set_ticks, set_labels in (
        (axis.set_xticks, axis.set_xticklabels),
        (axis.set_yticks, axis.set_yticklabels),
    ):
        set_ticks(ticks * heads_per_layer)
        set_labels([str(layer) for layer in ticks])
    axis.set_xlabel("layer of source head")
    axis.set_ylabel("layer of target head")


def phiid_matrices_figure(synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int) -> Figure:
    """Prompt-mean synergy and redundancy between all head pairs, heads ordered by layer."""
    figure = Figure(figsize=(11, 5), layout="constrained")
    layers = len(synergy) // heads_per_layer
    for axis, matrix, name, colormap in zip(
        figure.subplots(1, 2),
        (synergy, redundancy),
        ("synergy (sts)", "redundancy (rtr)"),
        ("Reds", "Blues"),
    ):
        image = axis.imshow(matrix, cmap=colormap, interpolation="nearest")
        _layer_ticks(axis, heads_per_layer, layers)
        axis.set_title(name)
        figure.colorbar(image, ax=axis, shrink=0.8, label="nats")
    return figure


def head_score_figure(scores: pd.DataFrame) -> Figure:
    """Syn-red score of every head, layers x heads (white: excluded heads)."""
    grid = scores.pivot(index="layer", columns="head", values="syn_red_score")
    limit = np.nanmax(np.abs(grid.to_numpy())) or 1.0
    figure = Figure(
        figsize=(0.35 * grid.shape[1] + 3, 0.22 * grid.shape[0] + 2),
        layout="constrained",
    )
    axis = figure.subplots()
    image = axis.imshow(
        grid.to_numpy(),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        aspect="auto",
        interpolation="nearest",
    )
    axis.set_xlabel("head")
    axis.set_ylabel("layer")
    axis.set_title("Synergy-redundancy score per head")
    figure.colorbar(image, ax=axis, label="rank(synergy) - rank(redundancy)")
    return figure


def layer_profile_figure(profile: pd.DataFrame) -> Figure:
    """Mean scaled syn-red score per layer against normalised depth (the paper's inverted U)."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axis = figure.subplots()
    axis.plot(profile["depth"], profile["score"], marker="o", color="tab:purple")
    axis.fill_between(
        profile["depth"],
        profile["score"] - profile["score_sd"],
        profile["score"] + profile["score_sd"],
        color="tab:purple",
        alpha=0.2,
    )
    axis.set_xlabel("normalised layer depth")
    axis.set_ylabel("syn-red score (min-max scaled)")
    axis.set_ylim(0, 1)
    axis.set_title("Layer profile")
    return figure


def ablation_curves_figure(curves: pd.DataFrame) -> Figure:
    """Behaviour divergence against the fraction of heads removed, per ablation order."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axis = figure.subplots()
    for order, rows in curves.groupby("order", sort=False):
        style = ORDER_STYLES[order]
        axis.plot(rows["fraction"], rows["divergence"], marker="o", **style)
        if rows["repeats"].iloc[0] > 1:
            low, high = (
                rows["divergence"] - rows["divergence_sd"],
                rows["divergence"] + rows["divergence_sd"],
            )
            axis.fill_between(rows["fraction"], low, high, color=style["color"], alpha=0.2)
    axis.set_xlabel("fraction of heads removed")
    axis.set_ylabel("KL(original || ablated), nats")
    axis.set_title("Cumulative head ablation")
    axis.legend()
    return figure
