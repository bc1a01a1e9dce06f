"""synergy pipeline: one modular pipeline per measured model (namespace = model name, input ``<model>.model``).

The untrained baselines (``variants.baselines``) go through activity, PhiID and scores only, as in the paper:
they are the reference for the layer profile, and ablating an untrained model measures nothing.
"""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn import synergy
from metasyn.pipelines import GPU_TAG
from metasyn.pipelines.synergy import nodes
from metasyn.pipelines.variants import Variants
from metasyn.synergy import plots as synergy_plots


def measurement_pipeline() -> Pipeline:
    """Activity -> PhiID -> head scores, layer profile, graph measures and figures, for one model."""
    return pipeline(
        [
            node(nodes.describe_measured_model, "model", "model_description", name="describe_measured_model"),
            node(
                nodes.extract_head_activity,
                ["model", "synergy_prompt_set", "head_activity_saved", "params:synergy.activity"],
                "head_activity",
                name="extract_head_activity",
                tags=[GPU_TAG],
            ),
            node(
                nodes.compute_phiid,
                ["head_activity", "synergy_prompt_set", "params:synergy.phiid"],
                ["phiid_synergy", "phiid_redundancy", "degenerate_heads"],
                name="compute_phiid",
            ),
            node(nodes.score_heads, ["phiid_synergy", "phiid_redundancy"], "head_scores", name="score_heads"),
            node(synergy.layer_profile, "head_scores", "layer_profile", name="summarise_layer_profile"),
            node(
                nodes.measure_networks,
                ["phiid_synergy", "phiid_redundancy", "head_scores", "params:synergy.graph"],
                "graph_measures",
                name="measure_networks",
            ),
            node(
                nodes.plot_phiid_matrices,
                ["phiid_synergy", "phiid_redundancy"],
                "phiid_matrices_figure",
                name="plot_phiid_matrices",
            ),
            node(synergy_plots.head_score_figure, "head_scores", "head_scores_figure", name="plot_head_scores"),
            node(
                synergy_plots.layer_profile_figure, "layer_profile", "layer_profile_figure", name="plot_layer_profile"
            ),
        ]
    )


def ablation_pipeline() -> Pipeline:
    """Cumulative head ablation in score order, reverse order and random orders, for one model."""
    return pipeline(
        [
            node(
                nodes.ablate_heads_cumulatively,
                ["model", "head_activity", "synergy_prompt_set", "head_scores", "params:synergy.ablation"],
                "ablation_curves",
                name="ablate_heads_cumulatively",
                tags=[GPU_TAG],
            ),
            node(
                synergy_plots.ablation_curves_figure,
                "ablation_curves",
                "ablation_curves_figure",
                name="plot_ablation_curves",
            ),
        ]
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """The shared prompt set, then every model in ``variants.synergy_models`` in its own namespace."""
    prompt_selection = pipeline(
        [
            node(
                synergy.select_prompts,
                ["synergy_prompts", "params:synergy.prompts_per_category"],
                "synergy_prompt_set",
                name="select_synergy_prompts",
            )
        ]
    )
    ablated = set(variants.evaluated_models)
    per_model = []
    for model in variants.synergy_models:
        template = measurement_pipeline() + ablation_pipeline() if model in ablated else measurement_pipeline()
        # Every model reads the same synergy parameters: keep them out of the namespace.
        shared_parameters = {name for name in template.all_inputs() if name.startswith("params:")}
        per_model.append(
            pipeline(template, namespace=model, inputs={"synergy_prompt_set"}, parameters=shared_parameters)
        )
    return prompt_selection + sum(per_model, Pipeline([]))
