"""comparison pipeline: every measured model side by side, statistics, figures and the report."""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn import comparison_plots
from metasyn.pipelines import CPU_LARGE_TAG
from metasyn.pipelines.comparison import nodes
from metasyn.variants import evaluated_models, synergy_models


def _collect(dataset: str, models: list[str], output: str) -> node:
    return node(
        nodes.collect_by_model,
        {model: f"{model}.{dataset}" for model in models},
        output,
        name=f"collect_{dataset}",
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Collect per-model results, test base vs each variant, plot, and write the report."""
    variants = "params:variants"
    return pipeline(
        [
            _collect("layer_profile", synergy_models(), "layer_profiles_by_model"),
            _collect("head_scores", synergy_models(), "head_scores_by_model"),
            _collect("phiid_synergy", evaluated_models(), "phiid_synergy_by_model"),
            _collect("phiid_redundancy", evaluated_models(), "phiid_redundancy_by_model"),
            _collect("ablation_curves", evaluated_models(), "ablation_curves_by_model"),
            node(nodes.pair_phiid, ["phiid_synergy_by_model", "phiid_redundancy_by_model"], "phiid_by_model",
                 name="pair_phiid"),
            node(nodes.compare_layers, ["layer_profiles_by_model", "head_scores_by_model", variants],
                 "layer_change_tests", name="compare_layers"),
            node(nodes.correlate_rankings, ["head_scores_by_model", variants], "ranking_correlations",
                 name="correlate_rankings"),
            node(nodes.bootstrap_band_changes,
                 ["phiid_by_model", "head_scores_by_model", variants, "params:comparison"],
                 "band_score_changes", name="bootstrap_band_changes", tags=[CPU_LARGE_TAG]),
            node(nodes.join_calibration_and_synergy, ["calibration_metrics_table", "band_score_changes"],
                 "calibration_synergy_changes", name="join_calibration_and_synergy"),
            node(comparison_plots.layer_profiles_figure, "layer_profiles_by_model", "layer_profiles_figure",
                 name="plot_layer_profiles"),
            node(nodes.plot_delta_heatmaps, ["head_scores_by_model", variants], "delta_heatmaps_figure",
                 name="plot_delta_heatmaps"),
            node(comparison_plots.ablation_overlay_figure, "ablation_curves_by_model", "ablation_overlay_figure",
                 name="plot_ablation_overlay"),
            node(comparison_plots.calibration_vs_synergy_figure, "calibration_synergy_changes",
                 "calibration_vs_synergy_figure", name="plot_calibration_vs_synergy"),
            node(nodes.write_verdict,
                 ["calibration_metrics_table", "band_score_changes", "layer_change_tests", variants,
                  "params:comparison"],
                 "verdict", name="write_verdict"),
            node(nodes.write_report,
                 ["params:comparison.model", "params:variants", "params:comparison", "verdict",
                  "calibration_metrics_table", "band_score_changes", "layer_change_tests", "ranking_correlations"],
                 "report", name="write_report"),
        ],
        # One namespace: a kedro-viz group and one SLURM job; dataset names stay unprefixed.
        namespace="comparison",
        prefix_datasets_with_namespace=False,
    )
