"""comparison pipeline: every measured model side by side, statistics, figures and the report."""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import CPU_LARGE_TAG, bind
from metasyn.pipelines.comparison import nodes
from metasyn.pipelines.variants import Variants


def _collect(dataset: str, models: list[str], output: str) -> node:
    return node(
        func=nodes.collect_by_model,
        inputs={model: f"{model}.{dataset}" for model in models},
        outputs=output,
        name=f"collect_{dataset}",
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """Collect per-model results, test base vs each variant, plot, and write the report."""
    evaluated_models, synergy_models = variants.evaluated_models, variants.synergy_models
    # The fine-tuned variants are fixed here, from the same list the namespaces were built from: each
    # variant's first training seed is compared with base and the control, its further seeds with the first.
    replicates = variants.replicates
    fine_tuned = [namespaces[0] for namespaces in replicates.values()]
    return pipeline(
        [
            _collect("layer_profile", synergy_models, "layer_profiles_by_model"),
            _collect("head_scores", synergy_models, "head_scores_by_model"),
            # Every model, random_init included: its layer profile is the reference for the inverted U.
            _collect("phiid_synergy", synergy_models, "phiid_synergy_by_model"),
            _collect("phiid_redundancy", synergy_models, "phiid_redundancy_by_model"),
            _collect("ablation_curves", evaluated_models, "ablation_curves_by_model"),
            _collect("ablation_divergences", evaluated_models, "ablation_divergences_by_model"),
            _collect("phiid_synergy_truncated", synergy_models, "phiid_synergy_truncated_by_model"),
            _collect("phiid_redundancy_truncated", synergy_models, "phiid_redundancy_truncated_by_model"),
            _collect("natural_ends", synergy_models, "natural_ends_by_model"),
            node(
                func=nodes.pair_phiid,
                inputs=["phiid_synergy_by_model", "phiid_redundancy_by_model"],
                outputs="phiid_by_model",
                name="pair_phiid",
            ),
            node(
                func=nodes.pair_phiid,
                inputs=["phiid_synergy_truncated_by_model", "phiid_redundancy_truncated_by_model"],
                outputs="phiid_truncated_by_model",
                name="pair_phiid_truncated",
            ),
            _collect("model_description", synergy_models, "model_descriptions_by_model"),
            node(
                func=bind(nodes.test_layer_changes, variants=fine_tuned, replicates=replicates),
                inputs=["phiid_by_model", "head_scores_by_model", "params:comparison"],
                outputs="layer_quantity_changes",
                name="test_layer_changes",
                tags=[CPU_LARGE_TAG],
            ),
            node(
                func=bind(nodes.correlate_rankings, variants=fine_tuned),
                inputs=["head_scores_by_model", "phiid_by_model", "params:comparison"],
                outputs="ranking_correlations",
                name="correlate_rankings",
            ),
            node(
                func=bind(nodes.bootstrap_band_changes, variants=fine_tuned, replicates=replicates),
                inputs=["phiid_by_model", "head_scores_by_model", "params:comparison"],
                outputs="band_score_changes",
                name="bootstrap_band_changes",
                tags=[CPU_LARGE_TAG],
            ),
            node(
                func=bind(nodes.test_profile_shapes, variants=fine_tuned, replicates=replicates),
                inputs=["phiid_by_model", "head_scores_by_model", "params:comparison"],
                outputs="profile_shape_changes",
                name="test_profile_shapes",
                tags=[CPU_LARGE_TAG],
            ),
            node(
                func=nodes.measure_model_shapes,
                inputs=["phiid_by_model", "ablation_divergences_by_model", "head_scores_by_model", "params:comparison"],
                outputs="model_shape_measures",
                name="measure_model_shapes",
                tags=[CPU_LARGE_TAG],
            ),
            node(
                func=bind(nodes.compare_ablation_areas, variants=fine_tuned, replicates=replicates),
                inputs=["ablation_divergences_by_model", "params:comparison"],
                outputs="ablation_area_changes",
                name="compare_ablation_areas",
            ),
            node(
                func=bind(nodes.test_end_of_sequence_sensitivity, variants=fine_tuned),
                inputs=[
                    "profile_shape_changes",
                    "model_shape_measures",
                    "phiid_truncated_by_model",
                    "head_scores_by_model",
                    "params:comparison",
                ],
                outputs="end_of_sequence_sensitivity",
                name="test_end_of_sequence_sensitivity",
                tags=[CPU_LARGE_TAG],
            ),
            node(
                func=nodes.summarize_natural_ends,
                inputs="natural_ends_by_model",
                outputs="natural_end_summary",
                name="summarize_natural_ends",
            ),
            node(
                func=nodes.join_calibration_and_synergy,
                inputs=["calibration_metrics_table", "band_score_changes", "params:calibration.verdict_method"],
                outputs="calibration_synergy_changes",
                name="join_calibration_and_synergy",
            ),
            node(
                func=nodes.plot_layer_profiles,
                inputs="layer_profiles_by_model",
                outputs="layer_profiles_figure",
                name="plot_layer_profiles",
            ),
            node(
                func=bind(nodes.plot_delta_heatmaps, variants=fine_tuned),
                inputs="head_scores_by_model",
                outputs="delta_heatmaps_figure",
                name="plot_delta_heatmaps",
            ),
            node(
                func=nodes.plot_ablation_overlay,
                inputs="ablation_curves_by_model",
                outputs="ablation_overlay_figure",
                name="plot_ablation_overlay",
            ),
            node(
                func=nodes.plot_calibration_vs_synergy,
                inputs="calibration_synergy_changes",
                outputs="calibration_vs_synergy_figure",
                name="plot_calibration_vs_synergy",
            ),
            node(
                func=bind(nodes.compose_verdict, variants=fine_tuned, replicates=replicates),
                inputs=[
                    "calibration_metrics_table",
                    "band_score_changes",
                    "profile_shape_changes",
                    "layer_quantity_changes",
                    "ranking_correlations",
                    "model_shape_measures",
                    "ablation_area_changes",
                    "end_of_sequence_sensitivity",
                    "params:comparison",
                    "params:calibration.verdict_method",
                ],
                outputs="verdict",
                name="compose_verdict",
            ),
            node(
                func=bind(
                    nodes.compose_report, variants=fine_tuned, replicates=replicates, baselines=list(variants.baselines)
                ),
                inputs=[
                    "model_descriptions_by_model",
                    "params:comparison",
                    "verdict",
                    "profile_shape_changes",
                    "model_shape_measures",
                    "calibration_metrics_table",
                    "band_score_changes",
                    "layer_quantity_changes",
                    "ranking_correlations",
                    "ablation_area_changes",
                    "end_of_sequence_sensitivity",
                    "natural_end_summary",
                    "params:synergy.ablation",
                    "run_records",
                    "run_id",
                    "probe_auroc_table",
                    "judgment_metrics_table",
                    "distributional_summary_table",
                ],
                outputs="report",
                name="compose_report",
            ),
        ],
        # One namespace: a kedro-viz group and one SLURM job; dataset names stay unprefixed.
        namespace="comparison",
        prefix_datasets_with_namespace=False,
    )
