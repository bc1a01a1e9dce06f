"""Metacognition figures: the consistency behind the training targets and the training examples' lengths
(data_prep), and the calibration pipeline's reliability diagrams, risk-coverage curves and metrics by domain.

Figures are built on ``matplotlib.figure.Figure`` directly (not pyplot), so building many of them in a run
leaves no global state behind.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from metasyn.metacognition.calibration import (
    ALL_DOMAINS,
    area_under_risk_coverage,
    calibration_bins,
    expected_calibration_error,
    risk_coverage,
)

METRIC_LABELS = {
    "accuracy": "accuracy",
    "parse_rate": "parse rate",
    "ece": "ECE (equal width)",
    "ece_equal_mass": "ECE (equal mass)",
    "brier": "Brier score",
    "auroc": "AUROC",
    "aurc": "AURC (risk-coverage)",
    "pairwise_parse_rate": "pairwise parse rate",
    "auc_a": "AUC_a (pairwise vs accuracy)",
    "auc_c": "AUC_c (pairwise vs consistency)",
}


def consistency_figure(consistency: pd.DataFrame, bins: pd.DataFrame) -> Figure:
    """Consistency histogram per domain, and empirical accuracy per consistency bin (the targets' source).

    ``consistency`` holds ``domain, consistency`` per question; ``bins`` the ``lower, upper, accuracy,
    n_questions`` of each bin (``metasyn.metacognition.targets.bin_accuracy``).
    """
    figure = Figure(figsize=(11, 4))
    left, right = figure.subplots(1, 2)
    for domain, group in consistency.groupby("domain"):
        left.hist(group["consistency"], bins=np.linspace(0, 1, 11), alpha=0.5, label=domain)
    left.set(xlabel="consistency with the greedy answer", ylabel="questions", title="Consistency by domain")
    left.legend()
    centres = (bins["lower"] + bins["upper"]) / 2
    right.bar(centres, bins["accuracy"], width=0.09, color="tab:blue", alpha=0.7, label="bin accuracy (train)")
    right.plot([0, 1], [0, 1], "k--", linewidth=1, label="accuracy = consistency")
    for centre, accuracy, count in zip(centres, bins["accuracy"], bins["n_questions"]):
        if count:
            right.annotate(f"n={count}", (centre, np.nan_to_num(accuracy)), ha="center", va="bottom", fontsize=7)
    right.set(
        xlabel="consistency bin",
        ylabel="accuracy of greedy answer",
        xlim=(0, 1),
        ylim=(0, 1.05),
        title="Target confidence source",
    )
    right.legend(loc="upper left")
    figure.tight_layout()
    return figure


def example_lengths_figure(lengths: pd.DataFrame, max_length: int | None) -> Figure:
    """Token lengths of the training examples, one histogram per split by task, with the ``max_length`` cut.

    ``lengths`` holds ``split, task, length, kept`` per example (``metasyn.metacognition.examples``).
    """
    splits = list(dict.fromkeys(lengths["split"]))
    figure = Figure(figsize=(5.5 * len(splits), 4), layout="constrained")
    axes = figure.subplots(1, len(splits), squeeze=False)[0]
    for ax, split in zip(axes, splits):
        rows = lengths[lengths["split"] == split]
        sns.histplot(rows, x="length", hue="task", multiple="stack", bins=30, ax=ax)
        title = f"{split}: {int((~rows['kept']).sum())} of {len(rows)} dropped"
        if max_length is not None:
            ax.axvline(max_length, color="tab:red", linestyle="--")
            title += f"\nlonger than max_length={max_length} (dashed)"
        ax.set(xlabel="tokens (prompt + completion, chat template)", ylabel="examples", title=title)
    return figure


def _parsed_by_model(outputs: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, int]]:
    """Per model (in order of appearance): its parsed outputs and its total number of outputs."""
    return {model: (group[group["parsed"]], len(group)) for model, group in outputs.groupby("model", sort=False)}


def reliability_diagrams(outputs: pd.DataFrame, n_bins: int = 10) -> Figure:
    """One reliability diagram per model: accuracy per equal-width confidence bin against the diagonal."""
    models = _parsed_by_model(outputs)
    figure = Figure(figsize=(4 * len(models), 4.4), layout="constrained")
    axes = figure.subplots(1, len(models), squeeze=False, sharey=True)[0]
    width = 1 / n_bins
    for ax, (model, (parsed, n_outputs)) in zip(axes, models.items()):
        ax.plot(
            [0, 1],
            [0, 1],
            color="grey",
            linestyle="--",
            linewidth=1,
            label="perfect calibration",
        )
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="stated confidence", aspect="equal")
        if parsed.empty:
            ax.set_title(f"{model}\nno parseable confidence (0/{n_outputs})")
            continue
        bins = calibration_bins(parsed["confidence"], parsed["correct"], n_bins)
        filled = bins[bins["count"] > 0]
        left = filled["bin"] * width
        ax.bar(
            left,
            filled["accuracy"],
            width=width,
            align="edge",
            edgecolor="black",
            label="accuracy",
        )
        ax.bar(
            left,
            filled["mean_confidence"] - filled["accuracy"],
            bottom=filled["accuracy"],
            width=width,
            align="edge",
            color="tab:red",
            alpha=0.3,
            hatch="//",
            label="gap to mean confidence",
        )
        for x, count in zip(left + width / 2, filled["count"]):
            ax.annotate(str(count), (x, 0.01), ha="center", fontsize=7)
        ece = expected_calibration_error(parsed["confidence"], parsed["correct"], n_bins)
        ax.set_title(f"{model}\nECE {ece:.3f} · parsed {len(parsed)}/{n_outputs}")
    axes[0].set_ylabel("accuracy (bar labels: answers per bin)")
    axes[0].legend(loc="upper left", fontsize=8)
    return figure


def risk_coverage_curves(outputs: pd.DataFrame) -> Figure:
    """Error rate among the most confident answers as coverage grows, one curve per model."""
    models = _parsed_by_model(outputs)
    figure = Figure(figsize=(5.5, 4.4), layout="constrained")
    ax = figure.subplots()
    unparsed = []
    for color, (model, (parsed, n_outputs)) in zip(sns.color_palette(n_colors=len(models)), models.items()):
        if parsed.empty:
            unparsed.append(model)
            continue
        curve = risk_coverage(parsed["confidence"], parsed["correct"])
        aurc = area_under_risk_coverage(parsed["confidence"], parsed["correct"])
        ax.step(
            np.append(0, curve.coverage),
            np.append(curve.risk[0], curve.risk),
            where="pre",
            color=color,
            label=f"{model} (AURC {aurc:.3f}, {len(parsed)}/{n_outputs} parsed)",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="coverage (share of parsed answers kept)",
        ylabel="risk (error rate)",
    )
    ax.set_title("Selective prediction by stated confidence")
    if unparsed:
        ax.text(
            0.02,
            0.02,
            "no parseable confidence: " + ", ".join(unparsed),
            transform=ax.transAxes,
            fontsize=8,
        )
    if len(unparsed) < len(models):
        ax.legend(fontsize=8)
    return figure


def metrics_by_domain(table: pd.DataFrame) -> Figure:
    """One panel per metric: value and bootstrap interval per domain, one marker colour per model."""
    rows = table[table["metric"].isin(list(METRIC_LABELS))]
    metrics = [metric for metric in METRIC_LABELS if metric in set(rows["metric"])]
    domains = sorted(set(rows["domain"]) - {ALL_DOMAINS}) + [ALL_DOMAINS]
    models = list(dict.fromkeys(rows["model"]))
    columns = min(4, len(metrics))
    grid_rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * grid_rows), layout="constrained")
    axes = figure.subplots(grid_rows, columns, squeeze=False).ravel()
    offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else np.zeros(1)
    palette = sns.color_palette(n_colors=len(models))
    for ax, metric in zip(axes, metrics):
        for offset, color, model in zip(offsets, palette, models):
            values = rows[(rows["metric"] == metric) & (rows["model"] == model)].set_index("domain").reindex(domains)
            # Percentile intervals need not contain the point estimate; error bars must not be negative.
            below = np.clip(values["value"] - values["ci_low"], 0, None)
            above = np.clip(values["ci_high"] - values["value"], 0, None)
            ax.errorbar(
                np.arange(len(domains)) + offset,
                values["value"],
                yerr=[below, above],
                fmt="o",
                color=color,
                capsize=3,
                label=model,
            )
        ax.set_xticks(np.arange(len(domains)), domains, rotation=30, ha="right")
        ax.set_title(METRIC_LABELS[metric], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    figure.suptitle("Calibration metrics by domain, with bootstrap intervals")
    return figure
