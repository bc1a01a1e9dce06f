"""comparison nodes: collect every model's results, test the changes, draw the figures, write the report."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from metasyn import synergy
from metasyn.comparison import plots as comparison_plots
from metasyn.comparison import report, shape, statistics
from metasyn.metacognition.calibration import ALL_DOMAINS


def collect_by_model(**results_by_model: object) -> dict[str, object]:
    """One dataset per model, gathered into ``{model: data}`` (model names are the keyword names)."""
    return results_by_model


def pair_phiid(
    synergy: dict[str, dict[str, torch.Tensor]], redundancy: dict[str, dict[str, torch.Tensor]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{model: (synergy, redundancy)}`` per-prompt matrices ``(prompts, H, H)`` in float64, once for every test."""
    return {
        model: (synergy[model]["per_prompt"].double().numpy(), redundancy[model]["per_prompt"].double().numpy())
        for model in synergy
    }


def test_layer_changes(
    phiid: dict[str, tuple[np.ndarray, np.ndarray]],
    head_scores: dict[str, pd.DataFrame],
    settings: dict,
    variants: list[str],
    replicates: dict[str, list[str]],
) -> pd.DataFrame:
    """Per layer, raw synergy and redundancy change from base, each control and between seeds: p and FDR q."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    pairs = statistics.comparison_pairs(variants, settings["controls"], replicates)
    return statistics.layer_quantity_changes(
        phiid, heads_per_layer, pairs, settings["shape_resamples"], settings["seed"]
    )


def correlate_rankings(
    head_scores: dict[str, pd.DataFrame],
    phiid: dict[str, tuple[np.ndarray, np.ndarray]],
    settings: dict,
    variants: list[str],
) -> pd.DataFrame:
    """Spearman correlation of each variant's head scores with base's, and their agreement across prompt halves."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    rows = []
    for variant in variants:
        halves = shape.cross_half_agreement(
            phiid["base"], phiid[variant], heads_per_layer, settings["shape_resamples"], settings["seed"]
        )
        rows.append({
            "variant": variant, **statistics.ranking_correlation(head_scores["base"], head_scores[variant]),
            **{f"halves_{key}": value for key, value in halves.items()},
        })  # fmt: skip
    return pd.DataFrame(rows)


def bootstrap_band_changes(
    phiid: dict[str, tuple[np.ndarray, np.ndarray]],
    head_scores: dict[str, pd.DataFrame],
    settings: dict,
    variants: list[str],
    replicates: dict[str, list[str]],
) -> pd.DataFrame:
    """Depth-band contrast change from base, each control and between seeds, with intervals over prompts."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    return shape.band_score_changes(
        phiid,
        heads_per_layer,
        tuple(settings["depth_band"]),
        statistics.comparison_pairs(variants, settings["controls"], replicates),
        settings["bootstrap_resamples"],
        settings["seed"],
    )


def test_profile_shapes(
    phiid: dict[str, tuple[np.ndarray, np.ndarray]],
    head_scores: dict[str, pd.DataFrame],
    settings: dict,
    variants: list[str],
    replicates: dict[str, list[str]],
) -> pd.DataFrame:
    """Layer-profile distance, peak shift and correlation from base, each control and between seeds."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    return shape.shape_change_table(
        phiid,
        heads_per_layer,
        statistics.comparison_pairs(variants, settings["controls"], replicates),
        settings["shape_resamples"],
        settings["seed"],
    )


def measure_model_shapes(
    phiid: dict[str, tuple[np.ndarray, np.ndarray]],
    ablation_divergences: dict[str, pd.DataFrame],
    head_scores: dict[str, pd.DataFrame],
    settings: dict,
) -> pd.DataFrame:
    """Per model: inverted-U strength, split-half reliability of the head ranking, ablation areas."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    return shape.model_shape_table(
        phiid, ablation_divergences, heads_per_layer, settings["shape_resamples"], settings["seed"]
    )


def compare_ablation_areas(
    ablation_divergences: dict[str, pd.DataFrame], settings: dict, variants: list[str], replicates: dict[str, list[str]]
) -> pd.DataFrame:
    """Ablation area change from base, each control and between seeds, paired over prompts."""
    pairs = statistics.comparison_pairs(variants, settings["controls"], replicates)
    return shape.ablation_area_changes(ablation_divergences, pairs, settings["shape_resamples"], settings["seed"])


def test_end_of_sequence_sensitivity(
    shape_changes: pd.DataFrame,
    model_shapes: pd.DataFrame,
    truncated: dict[str, tuple[np.ndarray, np.ndarray]],
    head_scores: dict[str, pd.DataFrame],
    settings: dict,
    variants: list[str],
) -> pd.DataFrame:
    """Headline shape measures on the steps before each prompt's natural end, beside the full-length ones."""
    heads_per_layer = synergy.heads_per_layer(head_scores["base"]["head"])
    pairs = statistics.comparison_pairs(variants, settings["controls"])
    return shape.end_of_sequence_sensitivity(
        shape_changes, model_shapes, truncated, heads_per_layer, pairs, settings["shape_resamples"], settings["seed"]
    )


def summarize_natural_ends(natural_ends: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and prompt category: how often and when the model would have ended its generation."""
    return shape.natural_end_summary(natural_ends)


def join_calibration_and_synergy(calibration: pd.DataFrame, band_changes: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per variant: pooled ECE and AUROC change from base (one method) next to the band contrast change."""
    pooled = report.pooled_rows(calibration, method)
    rows = []
    for change in band_changes[band_changes["reference"] == "base"].itertuples():
        row = {
            "variant": change.variant,
            "synergy_change": change.estimate,
            "synergy_ci_low": change.ci_low,
            "synergy_ci_high": change.ci_high,
        }
        for metric in ("ece", "auroc"):
            key = (change.variant, f"{metric}_minus_base")
            found = pooled.loc[key] if key in pooled.index else None
            row |= {
                f"{metric}_change": np.nan if found is None else found["value"],
                f"{metric}_ci_low": np.nan if found is None else found["ci_low"],
                f"{metric}_ci_high": np.nan if found is None else found["ci_high"],
            }
        rows.append(row)
    return pd.DataFrame(rows)


def plot_layer_profiles(profiles: dict[str, pd.DataFrame]) -> Figure:
    """Every model's layer profile on one axis."""
    return comparison_plots.layer_profiles_figure(profiles)


def plot_ablation_overlay(curves: dict[str, pd.DataFrame]) -> Figure:
    """Every model's ablation curves, per order."""
    return comparison_plots.ablation_overlay_figure(curves)


def plot_calibration_vs_synergy(changes: pd.DataFrame) -> Figure:
    """Calibration change against synergy band-score change, per variant."""
    return comparison_plots.calibration_vs_synergy_figure(changes)


def plot_delta_heatmaps(head_scores: dict[str, pd.DataFrame], variants: list[str]) -> Figure:
    """Per-head score change from base for each variant, on one symmetric colour scale."""
    fine_tuned = {variant: head_scores[variant] for variant in variants}
    return comparison_plots.delta_heatmaps_figure(head_scores["base"], fine_tuned)


def compose_verdict(
    calibration: pd.DataFrame,
    band_changes: pd.DataFrame,
    shape_changes: pd.DataFrame,
    layer_changes: pd.DataFrame,
    rankings: pd.DataFrame,
    model_shapes: pd.DataFrame,
    ablation_changes: pd.DataFrame,
    sensitivity: pd.DataFrame,
    settings: dict,
    calibration_method: str,
    variants: list[str],
    replicates: dict[str, list[str]],
) -> str:
    """The plain-language verdict, computed from the statistics (calibration under ``calibration_method``)."""
    return report.verdict(
        calibration,
        band_changes,
        shape_changes,
        layer_changes,
        rankings,
        model_shapes,
        variants,
        settings,
        calibration_method,
        replicates,
        ablation_changes,
        sensitivity,
    )


def compose_report(
    model_descriptions: dict[str, dict],
    settings: dict,
    verdict_text: str,
    shape_changes: pd.DataFrame,
    model_shapes: pd.DataFrame,
    calibration: pd.DataFrame,
    band_changes: pd.DataFrame,
    layer_changes: pd.DataFrame,
    rankings: pd.DataFrame,
    ablation_changes: pd.DataFrame,
    sensitivity: pd.DataFrame,
    natural_ends: pd.DataFrame,
    ablation: dict,
    run_records: dict[str, Callable[[], dict]],
    run_id: str,
    probes: pd.DataFrame,
    judgments: pd.DataFrame,
    distributional: pd.DataFrame,
    variants: list[str],
    replicates: dict[str, list[str]],
    baselines: list[str],
) -> str:
    """The Markdown report, linking the figures of its own run, with the run records' provenance."""
    configuration = {
        "fine-tuned variants": ", ".join(variants),
        "training-seed replicates": "; ".join(f"{name}: {', '.join(names)}" for name, names in replicates.items()),
        "baselines": ", ".join(baselines),
        "depth band": f"{settings['band_name']} {tuple(settings['depth_band'])}",
        "bootstrap resamples": settings["bootstrap_resamples"],
        "shape resamples and permutations": settings["shape_resamples"],
        "verdict thresholds": settings["verdict"],
        "head ablation": (
            f"{ablation['method']}"
            + (
                f" (scale {ablation['noise_scale']} x the base model's head output SD)"
                if ablation["method"] == "noise"
                else ""
            )
        ),
    }
    pooled = calibration[(calibration["domain"] == ALL_DOMAINS) & (calibration["model"] == "base")]
    size_note = report.size_label(
        int(band_changes["n_prompts"].iloc[0]),
        int(pooled.loc[pooled["metric"] == "accuracy", "n"].iloc[0]),
        min((len(names) for names in replicates.values()), default=0),
        settings["study_sizes"],
        model_descriptions.get("base"),
    )
    return report.render_report(
        configuration,
        pd.DataFrame.from_dict(model_descriptions, orient="index"),
        size_note,
        verdict_text,
        calibration,
        band_changes,
        layer_changes,
        rankings,
        shape_changes,
        model_shapes,
        # The report and each figure are versioned (catalog_comparison.yml): <file>/<run id>/<file>, side by side.
        {caption: f"../../{name}/{run_id}/{name}" for caption, name in settings["figures"].items()},
        settings["verdict"]["alpha"],
        # Partitions are named by run id: this run's record is written when the run starts.
        run_records[run_id]() if run_id in run_records else None,
        [load() for load in run_records.values()],
        ablation_changes,
        sensitivity,
        natural_ends,
        report.self_knowledge_sections(calibration, probes, judgments, distributional),
    )
