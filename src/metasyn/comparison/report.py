"""The run report: configuration, calibration table, synergy statistics, figures, and a computed verdict.

Every sentence of the verdict is produced from the numbers it is given; nothing is written in advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from metasyn.metacognition.calibration import ALL_DOMAINS
from metasyn.metacognition.evaluation import ANSWER_METHOD


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return f"[{_number(low)}, {_number(high)}]"


def _excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))


# Calibration metrics in the verdict, and whether lower values are better. The debiased squared calibration
# error stands for ECE: ECE's upward bias differs between models that state confidences at different
# resolutions, so its change read "a change" between two calibrated models in about half of simulated datasets
# (metasyn.metacognition.calibration).
VERDICT_METRICS = {"squared_ce_debiased": True, "auroc": False, "brier": True}
METRIC_NAMES = {"squared_ce_debiased": "debiased squared CE", "brier": "Brier", "auroc": "AUROC"}


def pooled_rows(calibration: pd.DataFrame, method: str) -> pd.DataFrame:
    """The all-domains rows of one elicitation method, indexed by ``(model, metric)``."""
    chosen = (calibration["domain"] == ALL_DOMAINS) & (calibration["method"] == method)
    return calibration[chosen].set_index(["model", "metric"])


def _metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.upper())


def _value_with_n(row: pd.Series) -> str:
    return f"{_number(row['value'])} {_interval(row['ci_low'], row['ci_high'])} (n = {int(row['n'])})"


def calibration_sentence(calibration: pd.DataFrame, variant: str, method: str, thresholds: Mapping) -> str:
    """How the pooled ECE, AUROC and Brier of a variant moved from base under one elicitation method."""
    pooled = pooled_rows(calibration, method)
    parts = []
    for metric, lower_is_better in VERDICT_METRICS.items():
        name = _metric_name(metric)
        keys = [("base", metric), (variant, metric), (variant, f"{metric}_minus_base")]
        if not all(key in pooled.index for key in keys):
            parts.append(f"{name} was not measured for {variant} under {method!r}")
            continue
        before, after, change = (pooled.loc[key] for key in keys)
        if not np.isfinite(change["value"]):
            reason = change["note"] or "undefined"
            parts.append(
                f"{name} change undefined ({reason}); base {_value_with_n(before)}, {variant} {_value_with_n(after)}"
            )
            continue
        detected = _excludes_zero(change["ci_low"], change["ci_high"])
        verdict_text = judgement(
            detected, change["ci_low"], change["ci_high"], thresholds["max_interval_width"][metric]
        )
        if detected:
            fell = change["value"] < 0
            verdict_text += ", an improvement" if fell == lower_is_better else ", a deterioration"
        parts.append(
            f"{name} base {_value_with_n(before)}, {variant} {_value_with_n(after)}; change on the "
            f"{int(change['n'])} questions both answered with a confidence {_number(change['value'])} "
            f"{_interval(change['ci_low'], change['ci_high'])}: {verdict_text}"
        )
    return (
        f"Calibration of {variant} (confidence elicited by {method!r}): "
        + "; ".join([*_accuracy_part(calibration, variant), *parts])
        + "."
    )


def _accuracy_part(calibration: pd.DataFrame, variant: str) -> list[str]:
    """Accuracy before and after, first: a calibration gain beside an accuracy collapse reads differently."""
    pooled = pooled_rows(calibration, ANSWER_METHOD)
    keys = [("base", "accuracy"), (variant, "accuracy"), (variant, "accuracy_minus_base")]
    if not all(key in pooled.index for key in keys):
        return []
    before, after, change = (pooled.loc[key] for key in keys)
    return [
        f"accuracy base {_value_with_n(before)}, {variant} {_value_with_n(after)}, change "
        f"{_number(change['value'])} {_interval(change['ci_low'], change['ci_high'])}"
    ]


def judgement(detected: bool, low: float, high: float, max_width: float) -> str:
    """ "a change", "inconclusive at this size" (interval wider than ``max_width``) or "no change detected"."""
    if detected:
        return "a change"
    width = high - low
    if not np.isfinite(width):
        return "undefined (no interval)"
    if width > max_width:
        return (
            f"inconclusive at this size (95% interval {_number(width)} wide, above the {_number(max_width)} accepted)"
        )
    return f"no change detected (95% interval {_number(width)} wide, within the {_number(max_width)} accepted)"


def _shape_row(shape_changes: pd.DataFrame, comparison: str, statistic: str) -> pd.Series:
    return shape_changes[(shape_changes["comparison"] == comparison) & (shape_changes["statistic"] == statistic)].iloc[
        0
    ]


def _layer_discoveries(layer_changes: pd.DataFrame, comparison: str, alpha: float) -> str:
    """How many layers' raw synergy and redundancy changed at false-discovery rate ``alpha``, and which."""
    parts = []
    for quantity, rows in layer_changes[layer_changes["comparison"] == comparison].groupby("quantity", sort=False):
        found = rows[rows["q_value"] < alpha]
        listed = f" (layers {', '.join(str(layer) for layer in found['layer'])})" if len(found) else ""
        parts.append(f"{quantity} in {len(found)} of {len(rows)} layers{listed}")
    return "; ".join(parts)


def synergy_sentence(
    comparison: str,
    shape_changes: pd.DataFrame,
    band_change: pd.Series,
    layer_changes: pd.DataFrame,
    thresholds: Mapping,
    band_name: str,
) -> str:
    """Shape distance and peak shift, band contrast and raw per-layer changes of one ``model vs reference``."""
    alpha = thresholds["alpha"]
    distance = _shape_row(shape_changes, comparison, "l2_distance")
    peak = _shape_row(shape_changes, comparison, "peak_shift")
    shape_verdict = judgement(
        distance["p_value"] < alpha, peak["ci_low"], peak["ci_high"], thresholds["max_interval_width"]["peak_shift"]
    )
    band_verdict = judgement(
        _excludes_zero(band_change["ci_low"], band_change["ci_high"]),
        band_change["ci_low"],
        band_change["ci_high"],
        thresholds["max_interval_width"]["band_contrast"],
    )
    return (
        f"**{comparison}** (n = {int(distance['n_prompts'])} prompts): layer-profile shape distance "
        f"{_number(distance['estimate'])} {_interval(distance['ci_low'], distance['ci_high'])} with paired "
        f"permutation p = {_number(distance['p_value'])}, peak-depth shift {_number(peak['estimate'])} "
        f"{_interval(peak['ci_low'], peak['ci_high'])}: {shape_verdict}. {band_name} contrast (band minus other "
        f"layers) change {_number(band_change['estimate'])} "
        f"{_interval(band_change['ci_low'], band_change['ci_high'])} (bootstrap over prompts): {band_verdict}. "
        f"Raw per-layer changes at false-discovery rate {alpha} (sign-flip permutation over prompts, "
        f"Benjamini-Hochberg): {_layer_discoveries(layer_changes, comparison, alpha)}."
    )


def ablation_sentence(ablation_changes: pd.DataFrame, comparison: str, max_width: float) -> str:
    """The paired change of both ablation areas for one ``model vs reference``; '' if it was not ablated."""
    rows = ablation_changes[ablation_changes["comparison"] == comparison]
    parts = [
        f"{row.statistic.removeprefix('ablation_area_').removesuffix('_change').replace('_', '-')} "
        f"{_number(row.estimate)} {_interval(row.ci_low, row.ci_high)} (n = {int(row.n_prompts)} prompts): "
        f"{judgement(_excludes_zero(row.ci_low, row.ci_high), row.ci_low, row.ci_high, max_width)}"
        for row in rows.itertuples()
    ]
    if not parts:
        return ""
    return (
        "Ablation area change (order minus the random orders' mean, per unit fraction, paired over prompts): "
        + "; ".join(parts)
        + "."
    )


def end_of_sequence_sentence(sensitivity: pd.DataFrame, comparison: str) -> str:
    """The shape test of one comparison on the steps before each prompt's natural end, beside full length."""
    rows = sensitivity[sensitivity["subject"] == comparison].set_index("statistic")
    if not {"l2_distance", "peak_shift"} <= set(rows.index):
        return ""
    distance, peak = rows.loc["l2_distance"], rows.loc["peak_shift"]
    return (
        f"On the steps before each prompt's natural end (n = {int(distance['n_prompts_truncated'])} prompts long "
        f"enough): shape distance p = {_number(distance['truncated_p_value'])} (full length "
        f"{_number(distance['full_p_value'])}), peak-depth shift {_number(peak['truncated_estimate'])} "
        f"{_interval(peak['truncated_ci_low'], peak['truncated_ci_high'])} (full length "
        f"{_number(peak['full_estimate'])})."
    )


def ranking_reading(low: float, high: float) -> str:
    """What the cross-half gap's range over splits says: a ranking change, none beyond prompt noise, or nothing."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undefined (a model's halves do not agree at all)"
    if high < 0:
        return "below 0 in nearly every split, a ranking change beyond prompt noise"
    if low > 0:
        return "above 0 in nearly every split, which no ranking change predicts (check the halves)"
    return "0 lies within, no ranking change beyond prompt noise"


def ranking_sentence(rankings: pd.DataFrame, variant: str) -> str:
    """A variant's head-ranking correlation with base, and its agreement with base across disjoint prompt halves."""
    row = rankings[rankings["variant"] == variant].iloc[0]
    return (
        f"Head ranking: Spearman rho with base {_number(row['spearman_rho'])} over {int(row['n_heads'])} heads on "
        f"the same prompts (their shared variation included). Across disjoint halves of the prompts "
        f"({int(row['halves_n_splits'])} random splits), base against {variant} {_number(row['halves_cross'])}, "
        f"base against itself {_number(row['halves_within_base'])}, {variant} against itself "
        f"{_number(row['halves_within_other'])}: cross minus their geometric mean "
        f"{_number(row['halves_cross_minus_within'])} {_interval(row['halves_ci_low'], row['halves_ci_high'])} "
        f"(2.5-97.5% of the splits): {ranking_reading(row['halves_ci_low'], row['halves_ci_high'])}."
    )


def model_shape_sentence(model_shapes: pd.DataFrame, statistic: str, label: str) -> str:
    """One per-model measure for every model, with its interval and n."""
    rows = model_shapes[model_shapes["statistic"] == statistic]
    values = [
        f"{row.model} {_number(row.estimate)} {_interval(row.ci_low, row.ci_high)} (n = {int(row.n_prompts)})"
        for row in rows.itertuples()
    ]
    return f"{label}: " + "; ".join(values) + "."


def seed_spread_sentence(calibration: pd.DataFrame, replicates: Sequence[str], method: str) -> str:
    """Each training seed's calibration change from base, and their range: the spread of fine-tuning itself."""
    pooled = pooled_rows(calibration, method)
    parts = []
    for metric in VERDICT_METRICS:
        rows = [pooled.loc[(namespace, f"{metric}_minus_base")] for namespace in replicates
                if (namespace, f"{metric}_minus_base") in pooled.index]  # fmt: skip
        values = np.array([row["value"] for row in rows], dtype=float)
        listed = ", ".join(f"{namespace} {_value_with_n(row)}" for namespace, row in zip(replicates, rows))
        spread = f"range {_number(np.ptp(values))}" if len(values) and np.isfinite(values).all() else "range n/a"
        parts.append(f"{_metric_name(metric)} change by seed: {listed} ({spread})")
    return f"Between training seeds of {replicates[0]} ({method!r}): " + "; ".join(parts) + "."


def beyond_references(estimate: float, low: float, high: float, references: Sequence[float]) -> str:
    """Where a change with 95% interval ``[low, high]`` lies against reference changes (the controls' and the
    other seeds' changes from base), 0 among them: "beyond" (the interval clears all of them), "within" (the
    estimate lies inside their range), "inconclusive" (the estimate lies outside but the interval reaches in) or
    "undefined" (no interval, or no reference)."""
    references = np.asarray([value for value in references if np.isfinite(value)], dtype=float)
    if not (np.isfinite(low) and np.isfinite(high)) or not len(references):
        return "undefined"
    bottom, top = min(references.min(), 0.0), max(references.max(), 0.0)
    if high < bottom or low > top:
        return "beyond"
    return "within" if bottom <= estimate <= top else "inconclusive"


def _change_from_base(
    calibration: pd.DataFrame, band_changes: pd.DataFrame, shape_changes: pd.DataFrame, method: str
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Each headline measure's change from base per model: ``{measure: {model: (estimate, low, high)}}``."""
    pooled = pooled_rows(calibration, method)
    measures: dict[str, dict[str, tuple[float, float, float]]] = {}
    for metric in VERDICT_METRICS:
        measures[f"{_metric_name(metric)} change"] = {
            model: (row["value"], row["ci_low"], row["ci_high"])
            for (model, name), row in pooled.iterrows()
            if name == f"{metric}_minus_base"
        }
    from_base = band_changes[band_changes["reference"] == "base"]
    measures["band contrast change"] = {
        row.variant: (row.estimate, row.ci_low, row.ci_high) for row in from_base.itertuples()
    }
    peaks = shape_changes[
        (shape_changes["statistic"] == "peak_shift") & shape_changes["comparison"].str.endswith(" vs base")
    ]
    measures["peak-depth shift"] = {
        row.comparison.removesuffix(" vs base"): (row.estimate, row.ci_low, row.ci_high) for row in peaks.itertuples()
    }
    return measures


def controls_sentence(
    variant: str,
    controls: Sequence[str],
    seeds: Sequence[str],
    calibration: pd.DataFrame,
    band_changes: pd.DataFrame,
    shape_changes: pd.DataFrame,
    method: str,
) -> str:
    """Per headline measure, whether ``variant``'s change from base lies beyond every control's and every other
    seed's change from base: the test of a metacognition effect against what fine-tuning alone does."""
    parts = []
    for measure, changes in _change_from_base(calibration, band_changes, shape_changes, method).items():
        if variant not in changes:
            continue
        estimate, low, high = changes[variant]
        references = {name: changes[name][0] for name in [*controls, *seeds] if name in changes}
        listed = ", ".join(f"{name} {_number(value)}" for name, value in references.items())
        reading = {
            "beyond": "beyond every control and seed",
            "within": "within the spread of the controls and seeds",
            "inconclusive": "inconclusive at this size (the interval reaches into their spread)",
            "undefined": "undefined (no interval or no reference)",
        }[beyond_references(estimate, low, high, list(references.values()))]
        parts.append(f"{measure} {_number(estimate)} {_interval(low, high)} against {listed or 'none'}: {reading}")
    return (
        f"{variant} against the controls (its change from base, 95% interval, beside each control's and each "
        f"other seed's change from base; an effect is one whose interval excludes 0 and all of them): "
        + "; ".join(parts)
        + "."
    )


def size_label(
    n_prompts: int, n_questions: int, n_seeds: int, study_sizes: Mapping, model: Mapping | None = None
) -> str:
    """A warning line when the run is smaller than the study's sizes, empty when it is not; it names the measured
    ``model`` (``describe_model``: ``name_or_path``, ``parameters``) when given."""
    short = [
        f"{have} {what if have != 1 else one} (study: {want})"
        for what, one, have, want in (
            ("synergy prompts", "synergy prompt", n_prompts, study_sizes["prompts"]),
            ("test questions", "test question", n_questions, study_sizes["test_questions"]),
            ("training seeds per variant", "training seed per variant", n_seeds, study_sizes["seeds"]),
        )
        if have < want
    ]
    if not short:
        return ""
    what = ""
    if model is not None:
        name = str(model["name_or_path"]).rstrip("/").rsplit("/", 1)[-1]
        what = f" (a demo of {name}, a {model['parameters'] / 1e6:.0f}M-parameter model)"
    return (
        f"**Demo sizes**{what}: {', '.join(short)}. The intervals below are as wide as these sizes make them; read "
        "this run as a check of the method, not as the study's answer."
    )


def verdict(
    calibration: pd.DataFrame,
    band_changes: pd.DataFrame,
    shape_changes: pd.DataFrame,
    layer_changes: pd.DataFrame,
    rankings: pd.DataFrame,
    model_shapes: pd.DataFrame,
    variants: list[str],
    settings: Mapping,
    calibration_method: str,
    replicates: Mapping[str, Sequence[str]] | None = None,
    ablation_changes: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
) -> str:
    """Plain-language answer to the research question, computed from the statistics.

    ``variants`` are the first replicates; ``replicates`` maps each to all its training-seed namespaces,
    whose differences from the first are the between-seed reference for every change. ``ablation_changes``
    (``shape.ablation_area_changes``) and ``sensitivity`` (``shape.end_of_sequence_sensitivity``) add their
    sentences to each comparison they cover.
    """
    thresholds = settings["verdict"]
    replicates = replicates or {}
    no_rows = pd.DataFrame(columns=["comparison", "subject", "statistic"])
    ablation_changes = no_rows if ablation_changes is None else ablation_changes
    sensitivity = no_rows if sensitivity is None else sensitivity
    lines = []

    def synergy_lines(model: str) -> list[str]:
        sentences = []
        for change in band_changes[band_changes["variant"] == model].itertuples():
            comparison = f"{model} vs {change.reference}"
            extra = [
                ablation_sentence(ablation_changes, comparison, thresholds["max_interval_width"]["ablation_area"]),
                end_of_sequence_sentence(sensitivity, comparison),
            ]
            sentences.append(
                " ".join(
                    [
                        synergy_sentence(
                            comparison,
                            shape_changes,
                            band_changes.loc[change.Index],
                            layer_changes,
                            thresholds,
                            settings["band_name"],
                        ),
                        *(sentence for sentence in extra if sentence),
                    ]
                )
            )
        return sentences

    controls = list(settings["controls"])
    for variant in variants:
        lines.append(calibration_sentence(calibration, variant, calibration_method, thresholds))
        lines.extend(synergy_lines(variant))
        seeds = list(replicates.get(variant, [variant]))
        if variant not in controls:
            lines.append(
                controls_sentence(
                    variant, controls, seeds[1:], calibration, band_changes, shape_changes, calibration_method
                )
            )
        if len(seeds) > 1:
            lines.append(seed_spread_sentence(calibration, seeds, calibration_method))
            lines.extend(f"Between training seeds: {line}" for seed in seeds[1:] for line in synergy_lines(seed))
        lines.append(ranking_sentence(rankings, variant))
    lines.append(
        model_shape_sentence(
            model_shapes,
            "inverted_u_quadratic",
            "Inverted U (minus the quadratic coefficient of the profile against depth; > 0 is an inverted U; 95% "
            "interval over prompt resamples)",
        )
    )
    if (model_shapes["statistic"] == "ablation_area_synergistic_first").any():
        lines.append(
            model_shape_sentence(
                model_shapes,
                "ablation_area_synergistic_first",
                "Ablation area, synergistic-first (> 0: removing the most synergistic heads first hurts more than "
                "removing heads at random; 95% interval over prompts and random orders)",
            )
        )
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


def layer_change_summary(layer_changes: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per comparison and quantity: layers tested, layers with q < ``alpha``, smallest q, largest |change|."""
    grouped = layer_changes.groupby(["comparison", "quantity"], sort=False)
    return pd.DataFrame(
        {
            "layers": grouped.size(),
            f"layers_q<{alpha}": grouped["q_value"].agg(lambda q: int((q < alpha).sum())),
            "smallest_q": grouped["q_value"].min(),
            "largest_abs_change": grouped["estimate"].agg(lambda change: change.abs().max()),
            "n_prompts": grouped["n_prompts"].max(),
        }
    ).reset_index()


def node_times(records: Sequence[Mapping]) -> pd.DataFrame:
    """Each node's wall time in the newest run that ran it, longest first, with the run and its share."""
    latest = {}
    for record in sorted(records, key=lambda record: record.get("started", "")):
        for entry in record.get("nodes", []):
            latest[entry["name"]] = {"node": entry["name"], "seconds": entry["seconds"], "run": record["run_id"]}
    table = pd.DataFrame(list(latest.values()), columns=["node", "seconds", "run"])
    table = table.sort_values("seconds", ascending=False, ignore_index=True)
    return table.assign(share=table["seconds"] / table["seconds"].sum() if len(table) else [])


def provenance_lines(record: Mapping) -> str:
    """The run record of the run that wrote the report, as a Markdown list."""
    git = record.get("git") or {}
    packages = ", ".join(f"{name} {version}" for name, version in (record.get("packages") or {}).items() if version)
    device = record.get("device") or {}
    return "\n".join(
        [
            f"- **run**: `{record['run_id']}`, started {record.get('started')}, environment "
            f"`{record.get('environment')}`, pipelines `{record.get('pipeline')}`",
            f"- **code**: commit `{git.get('commit')}`" + (" (with uncommitted changes)" if git.get("dirty") else ""),
            f"- **machine**: {device.get('kind')} {', '.join(device.get('names', []))}; Python {record.get('python')}",
            f"- **packages**: {packages}",
        ]
    )


def _cell(row: pd.Series, value: str = "value") -> str:
    return f"{_number(row[value])} {_interval(row['ci_low'], row['ci_high'])} (n = {int(row['n'])})"


def probe_view(probes: pd.DataFrame, calibration: pd.DataFrame) -> pd.DataFrame:
    """Per model, token position and layer: the probe's AUROC beside the AUROC of each confidence the model states."""
    stated = {
        method: {model: _cell(row) for (model, metric), row in pooled_rows(calibration, method).iterrows() if metric == "auroc"}
        for method in calibration["method"].unique()
        if method in ("stated", "forced", "p_true")
    }  # fmt: skip
    rows = []
    for row in probes.itertuples():
        cells = {
            "model": row.model, "position": row.position, "layer": row.layer,
            "probe AUROC": _cell(pd.Series(row._asdict()), "auroc") if np.isfinite(row.auroc) else f"n/a ({row.note})",
        }  # fmt: skip
        rows.append(cells | {f"{method} AUROC": by_model.get(row.model, "") for method, by_model in stated.items()})
    return pd.DataFrame(rows)


def self_knowledge_sections(
    calibration: pd.DataFrame, probes: pd.DataFrame, judgments: pd.DataFrame, distributional: pd.DataFrame
) -> list[str]:
    """The report's sections on what the model knows about itself besides the number it states."""
    judgment_view = (
        judgments.assign(cell=[_cell(row) for _, row in judgments.iterrows()])
        .pivot_table(index="model", columns="metric", values="cell", aggfunc="first", sort=False)
        .reset_index()
    )
    distributional_view = distributional.assign(
        **{"mean KL (nats)": [_cell(row, "mean_kl") for _, row in distributional.iterrows()]}
    )[["model", "mean KL (nats)"]]
    return [
        "## Self-knowledge: internal versus stated confidence",
        "A cross-validated logistic-regression probe of correctness on the residual stream (after each listed "
        "decoder layer; at the last prompt token, or averaged over the model's own greedy answer), beside the "
        "AUROC of each confidence the model states. Above the stated AUROC: the activations know more about "
        "correctness than the model says. The probe's interval resamples its out-of-fold scores and ignores "
        "refitting, so it is too narrow (in a null simulation at n = 200 it held 0.5 in 80% of datasets, not 95%).",
        _markdown_table(probe_view(probes, calibration)),
        "## Self-knowledge: can / uncertain / cannot",
        "Before answering, each model judges whether it can answer each test question; the truth is the class of "
        "the base model's accuracy over its samples of the question (100%: can, 50-99%: uncertain, below 50%: "
        "cannot). Exact match, recall and Cohen's kappa count readable judgments, with 95% intervals over "
        "questions. Kappa is agreement beyond what the class shares give by chance: a model that names the "
        "commonest class every time matches that class's share of questions, at kappa 0.",
        _markdown_table(judgment_view),
        "The 3x3 confusion matrices per model: `data/08_reporting/calibration/judgment_confusion.png` (the "
        "calibration pipeline's, not versioned with this report).",
        "## Self-knowledge: the model's own output distribution",
        "KL(sampled || reported): answers sampled at temperature 1 to open prompts (name an animal, ...) against "
        "the five most likely answers the model reports, the unlisted mass spread over at least 1/epsilon answers "
        "(metasyn.metacognition.distributional); mean over prompts, 95% interval over prompts. 0 is a model that "
        "reports its own distribution.",
        _markdown_table(distributional_view),
    ]


def render_report(
    configuration: Mapping,
    models: pd.DataFrame,
    size_note: str,
    verdict_text: str,
    calibration: pd.DataFrame,
    changes: pd.DataFrame,
    layer_changes: pd.DataFrame,
    rankings: pd.DataFrame,
    shape_changes: pd.DataFrame,
    model_shapes: pd.DataFrame,
    figures: Mapping[str, str],
    alpha: float,
    run_record: Mapping | None = None,
    run_records: Sequence[Mapping] = (),
    ablation_changes: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
    natural_ends: pd.DataFrame | None = None,
    self_knowledge: Sequence[str] = (),
) -> str:
    """The whole report as Markdown; ``models`` describes each loaded model (one row per model name);
    ``size_note`` (``size_label``) opens it when the run is below the study's sizes; ``figures`` maps a caption
    to a path relative to the report; ``run_record`` is the record of the run that writes the report, and
    ``run_records`` every run's, for the node times; ``self_knowledge`` (``self_knowledge_sections``) follows the
    calibration table."""
    pooled = calibration[calibration["domain"] == ALL_DOMAINS]
    cells = pooled.assign(cell=[_value_with_n(row) for _, row in pooled.iterrows()])
    calibration_view = cells.pivot_table(
        index=["method", "metric"], columns="model", values="cell", aggfunc="first", sort=False
    ).reset_index()
    sections = [
        "# metasyn report",
        *([size_note] if size_note else []),
        "Does fine-tuning a language model to state calibrated confidence change the synergistic structure "
        "of its attention heads?",
        "## Verdict",
        verdict_text,
        "## Configuration",
        "\n".join(f"- **{key}**: `{value}`" for key, value in configuration.items()),
        "Models as loaded (not as configured):",
        _markdown_table(models.rename_axis("model").reset_index()),
        "## Calibration (all domains pooled)",
        "Value, 95% bootstrap interval (questions resampled, the same resamples for every model) and n, per "
        "elicitation method. `stated`: the confidence the model wrote (its parse rate is format compliance); "
        "`forced`: read from the next-token distribution after the trained confidence label; `p_true`: "
        "P(True) that the model's own answer is correct. `<metric>_minus_base` rows are on the questions where "
        "both models have a confidence. ECE is biased upwards, by more for a model that states more distinct "
        "confidences (a perfectly calibrated one scores about 0.09 at 153 questions), and so are its interval "
        "and its changes; `squared_ce_debiased` (Kumar et al. 2019) is each bin's squared gap less its sampling "
        "variance, 0 on average for a calibrated model, and the verdict reads it instead. For a calibrated model "
        "at 153 questions its interval held 0 in 94% of simulated datasets, ECE's in none; resampling shifts it "
        "up, so it can lie above an estimate that fell below 0 by chance.",
        _markdown_table(calibration_view.fillna("")),
        *self_knowledge,
        "## Synergy: band contrast changes (bootstrap over prompts)",
        "Band contrast: mean layer-profile score in the depth band minus the mean of the other layers (blind to "
        "the uniform offset that min-max scaling adds when an extreme head moves).",
        _markdown_table(changes),
        "## Synergy: raw per-layer synergy and redundancy changes",
        "Unscaled mean PhiID atom of each layer's heads, model minus reference; two-sided sign-flip permutation "
        "over prompts, Benjamini-Hochberg q-values across layers (full table: layer_quantity_changes.parquet).",
        _markdown_table(layer_change_summary(layer_changes, alpha)),
        "## Synergy: head ranking agreement with base",
        _markdown_table(rankings),
        "## Synergy: layer-profile shape change (paired bootstrap and permutation over prompts)",
        "Distance (RMS over layers after removing the mean offset, which min-max scaling can shift as a whole), "
        "peak shift (depth of the smoothed profile's maximum) and profile correlation, with 95% intervals over "
        "prompt resamples; the distance is judged by its permutation p-value.",
        _markdown_table(shape_changes),
        "## Synergy: per-model shape, ranking reliability and ablation",
        "Inverted-U strength (negated quadratic coefficient against depth; middle-third minus outer mean), "
        "split-half reliability of the head ranking (Spearman-Brown: how reproducible a model's ranking is "
        "across prompts) and the ablation area (order minus mean random order, per unit fraction).",
        _markdown_table(model_shapes),
        *(
            [
                "## Synergy: ablation area changes (paired over prompts and random orders)",
                _markdown_table(ablation_changes),
            ]
            if ablation_changes is not None
            else []
        ),
        *(
            [
                "## Synergy: end-of-sequence sensitivity",
                "Generation suppresses end-of-sequence, so most prompts run past the point where the model would "
                "have stopped. How often and where it would have stopped, per model and prompt category:",
                _markdown_table(natural_ends),
                "The headline measures again on each prompt's steps before its natural end (prompts left with too "
                "few steps dropped), beside the full-length values:",
                _markdown_table(sensitivity),
            ]
            if sensitivity is not None and natural_ends is not None
            else []
        ),
        "## Provenance",
        "Run records: `data/08_reporting/runs/<run id>.json` (every parameter as resolved, package versions, "
        "device, each node's time). This report, its tables and its figures are saved in version folders named "
        "after the run that wrote them (`data/08_reporting/comparison/<output>/<run id>/`):",
        provenance_lines(run_record) if run_record else "- **run**: no run record (run outside a Kedro session)",
        *(
            [
                "Wall time of each node in the newest run that ran it:",
                _markdown_table(node_times(run_records), digits=2),
            ]
            if run_records
            else []
        ),
        "## Figures",
        "\n\n".join(f"### {caption}\n\n![{caption}]({path})" for caption, path in figures.items()),
    ]
    return "\n\n".join(sections) + "\n"
