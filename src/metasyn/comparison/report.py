"""The run report: configuration, calibration table, synergy statistics, figures, and a computed verdict.

Every sentence of the verdict is produced from the numbers it is given; nothing is written in advance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from metasyn.metacognition.calibration import ALL_DOMAINS


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return f"[{_number(low)}, {_number(high)}]"


def _excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))


def _undefined_change(pooled: pd.DataFrame, metric: str, variant: str, before: float, after: float) -> str:
    """Why a calibration change cannot be computed, with whatever value is defined and the parse rates."""

    def parse_rate(model: str) -> str:
        key = (model, "parse_rate")
        return _number(pooled.loc[key, "value"]) if key in pooled.index else "n/a"

    known = {model: value for model, value in (("base", before), (variant, after)) if np.isfinite(value)}
    stated = "; ".join(f"{model} {metric.upper()} = {_number(value)}" for model, value in known.items())
    return (
        f"{metric.upper()} change undefined: parse rate of stated confidence is {parse_rate('base')} for base and "
        f"{parse_rate(variant)} for {variant}" + (f" ({stated})" if stated else "")
    )


def calibration_sentence(calibration: pd.DataFrame, variant: str) -> str:
    """How the pooled ECE and AUROC of a variant moved from base, and whether the interval excludes zero."""
    pooled = calibration[calibration["domain"] == ALL_DOMAINS].set_index(["model", "metric"])
    parts = []
    for metric, better in (("ece", "fell"), ("auroc", "rose")):
        try:
            before, after = pooled.loc[("base", metric), "value"], pooled.loc[(variant, metric), "value"]
            change = pooled.loc[(variant, f"{metric}_minus_base")]
        except KeyError:
            parts.append(f"{metric.upper()} was not measured for {variant}")
            continue
        if not (np.isfinite(before) and np.isfinite(after)):
            parts.append(_undefined_change(pooled, metric, variant, before, after))
            continue
        direction = "did not change" if after == before else ("fell" if after < before else "rose")
        reliable = _excludes_zero(change["ci_low"], change["ci_high"])
        qualifier = (
            ""
            if direction == "did not change"
            else (
                " (95% CI of the change excludes 0)"
                if reliable
                else " (95% CI of the change includes 0: not distinguishable from no change)"
            )
        )
        good = " an improvement" if reliable and direction == better else ""
        parts.append(
            f"{metric.upper()} {direction} from {_number(before)} to {_number(after)}, change "
            f"{_number(change['value'])} {_interval(change['ci_low'], change['ci_high'])}{qualifier}{good}"
        )
    return f"For {variant}: " + "; ".join(parts) + "."


def synergy_sentence(changes: pd.DataFrame, layer_tests: pd.DataFrame, variant: str, band_name: str) -> str:
    """The band syn-red change of a variant, its layer-wise test, and how it compares with the control."""
    own = changes[changes["contrast"] == f"{variant} - base"].iloc[0]
    test = layer_tests[(layer_tests["variant"] == variant) & (layer_tests["quantity"] == "syn_red_score")].iloc[0]
    reliable = _excludes_zero(own["ci_low"], own["ci_high"])
    sentence = (
        f"{band_name} syn-red score changed by {_number(own['estimate'])} "
        f"{_interval(own['ci_low'], own['ci_high'])} for {variant} "
        f"({'a change' if reliable else 'not distinguishable from no change'} at 95% over prompt resamples; "
        f"layer-wise paired t-test p = {_number(test['t_p'])}, Wilcoxon p = {_number(test['wilcoxon_p'])}, "
        f"Cohen's d = {_number(test['cohens_d'], 2)})"
    )
    versus = changes[(changes["variant"] == variant) & (changes["reference"] != "base")]
    if len(versus):
        row = versus.iloc[0]
        if _excludes_zero(row["ci_low"], row["ci_high"]):
            relation = "larger than" if row["estimate"] > 0 else "smaller than"
        else:
            relation = "no different from"
        control = row["reference"]
        sentence += (
            f"; relative to the control fine-tune ({control}) the difference is {_number(row['estimate'])} "
            f"{_interval(row['ci_low'], row['ci_high'])}, so the change is {relation} the effect of fine-tuning as such"
        )
    return sentence + "."


def verdict(
    calibration: pd.DataFrame, changes: pd.DataFrame, layer_tests: pd.DataFrame, variants: list[str], band_name: str
) -> str:
    """Plain-language answer to the research question, computed from the statistics."""
    lines = []
    for variant in variants:
        lines.append(calibration_sentence(calibration, variant))
        lines.append(synergy_sentence(changes, layer_tests, variant, band_name))
    return "\n\n".join(lines)


def _markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return _number(float(value), digits)
        return str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    rows = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_report(
    configuration: Mapping,
    models: pd.DataFrame,
    verdict_text: str,
    calibration: pd.DataFrame,
    changes: pd.DataFrame,
    layer_tests: pd.DataFrame,
    rankings: pd.DataFrame,
    shape_changes: pd.DataFrame,
    model_shapes: pd.DataFrame,
    figures: Mapping[str, str],
) -> str:
    """The whole report as Markdown; ``models`` describes each loaded model (one row per model name);
    ``figures`` maps a caption to a path relative to the report."""
    pooled = calibration[calibration["domain"] == ALL_DOMAINS]
    calibration_view = pooled.pivot_table(index="metric", columns="model", values="value", aggfunc="first")
    calibration_view = calibration_view.reset_index()
    intervals = pooled.assign(interval=[_interval(low, high) for low, high in zip(pooled["ci_low"], pooled["ci_high"])])
    interval_view = intervals.pivot_table(
        index="metric", columns="model", values="interval", aggfunc="first"
    ).reset_index()
    sections = [
        "# metasyn report",
        "Does fine-tuning a language model to state calibrated confidence change the synergistic structure "
        "of its attention heads?",
        "## Verdict",
        verdict_text,
        "## Configuration",
        "\n".join(f"- **{key}**: `{value}`" for key, value in configuration.items()),
        "Models as loaded (not as configured):",
        _markdown_table(models.rename_axis("model").reset_index()),
        "## Calibration (all domains pooled)",
        _markdown_table(calibration_view),
        "95% bootstrap intervals (questions resampled):",
        _markdown_table(interval_view),
        "## Synergy: band score changes (bootstrap over prompts)",
        _markdown_table(changes),
        "## Synergy: per-layer paired tests (base vs variant)",
        _markdown_table(layer_tests),
        "## Synergy: head ranking agreement with base",
        _markdown_table(rankings),
        "## Synergy: layer-profile shape change (paired bootstrap and permutation over prompts)",
        "Distance (RMS over layers after removing the mean offset, which min-max scaling can shift as a whole), "
        "peak shift (depth of the smoothed profile's maximum) and profile correlation, with 95% intervals over "
        "prompt resamples; the distance is judged by its permutation p-value.",
        _markdown_table(shape_changes),
        "## Synergy: per-model shape, ranking noise floor and ablation",
        "Inverted-U strength (negated quadratic coefficient against depth; middle-third minus outer mean), "
        "split-half reliability of the head ranking (Spearman-Brown; the ceiling for any ranking correlation "
        "above) and the ablation area (order minus mean random order, per unit fraction).",
        _markdown_table(model_shapes),
        "## Figures",
        "\n\n".join(f"### {caption}\n\n![{caption}]({path})" for caption, path in figures.items()),
    ]
    return "\n\n".join(sections) + "\n"
