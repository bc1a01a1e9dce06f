"""synergy pipeline: one modular pipeline per measured model (namespace = model name, input ``<model>.model``).

The untrained baselines (``variants.baselines``) go through activity, PhiID and scores only, as in the paper:
they are the reference for the layer profile, and ablating an untrained model measures nothing. The noise that
deactivates heads is scaled to the base model's head outputs (``base.head_output_spread``, estimated once in
the base namespace) for every ablated model; ``metasyn.synergy.ablation`` says why.
"""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG, per_model
from metasyn.pipelines.synergy import nodes
from metasyn.pipelines.variants import BASE, Variants

BASE_HEAD_OUTPUT_SPREAD = f"{BASE}.head_output_spread"


def measurement_pipeline() -> Pipeline:
    """Activity -> PhiID -> head scores, layer profile, graph measures and figures, for one model."""
    return pipeline(
        [
            node(
                func=nodes.describe_measured_model,
                inputs="model",
                outputs="model_description",
                name="describe_measured_model",
            ),
            node(
                func=nodes.extract_head_activity,
                inputs=["model", "synergy_prompt_set", "head_activity_saved", "params:synergy.activity"],
                outputs="head_activity",
                name="extract_head_activity",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.compute_phiid,
                inputs=["head_activity", "synergy_prompt_set", "params:synergy.phiid"],
                outputs=["phiid_synergy", "phiid_redundancy", "degenerate_heads"],
                name="compute_phiid",
            ),
            node(
                func=nodes.compute_phiid_before_natural_end,
                inputs=[
                    "head_activity",
                    "synergy_prompt_set",
                    "phiid_synergy",
                    "phiid_redundancy",
                    "params:synergy.phiid",
                    "params:synergy.truncation",
                ],
                outputs=["phiid_synergy_truncated", "phiid_redundancy_truncated", "natural_ends"],
                name="compute_phiid_before_natural_end",
            ),
            node(
                func=nodes.score_heads,
                inputs=["phiid_synergy", "phiid_redundancy"],
                outputs="head_scores",
                name="score_heads",
            ),
            node(
                func=nodes.summarize_layer_profile,
                inputs="head_scores",
                outputs="layer_profile",
                name="summarize_layer_profile",
            ),
            node(
                func=nodes.measure_networks,
                inputs=["phiid_synergy", "phiid_redundancy", "head_scores", "params:synergy.graph"],
                outputs="graph_measures",
                name="measure_networks",
            ),
            node(
                func=nodes.plot_phiid_matrices,
                inputs=["phiid_synergy", "phiid_redundancy"],
                outputs="phiid_matrices_figure",
                name="plot_phiid_matrices",
            ),
            node(
                func=nodes.plot_head_scores, inputs="head_scores", outputs="head_scores_figure", name="plot_head_scores"
            ),
            node(
                func=nodes.plot_layer_profile,
                inputs="layer_profile",
                outputs="layer_profile_figure",
                name="plot_layer_profile",
            ),
        ]
    )


def head_output_spread_pipeline() -> Pipeline:
    """The spread of the model's head outputs, which scales the ablation noise (instantiated for the base model)."""
    return pipeline(
        [
            node(
                func=nodes.estimate_head_output_spread,
                inputs=["model", "head_activity", "synergy_prompt_set", "params:synergy.ablation"],
                outputs="head_output_spread",
                name="estimate_head_output_spread",
                tags=[GPU_TAG],
            )
        ]
    )


def ablation_pipeline() -> Pipeline:
    """Cumulative head ablation in score order, reverse order and random orders, for one model."""
    return pipeline(
        [
            node(
                func=nodes.ablate_heads_cumulatively,
                inputs=[
                    "model",
                    "head_activity",
                    "synergy_prompt_set",
                    "head_scores",
                    BASE_HEAD_OUTPUT_SPREAD,
                    "params:synergy.ablation",
                ],
                outputs="ablation_divergences",
                name="ablate_heads_cumulatively",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.summarize_ablation_curves,
                inputs="ablation_divergences",
                outputs="ablation_curves",
                name="summarize_ablation_curves",
            ),
            node(
                func=nodes.plot_ablation_curves,
                inputs="ablation_curves",
                outputs="ablation_curves_figure",
                name="plot_ablation_curves",
            ),
        ]
    )


def prompt_selection_pipeline() -> Pipeline:
    """The prompt set, selected inside each model's namespace so that ``--namespaces`` runs stand alone."""
    return pipeline(
        [
            node(
                func=nodes.select_synergy_prompts,
                inputs=["synergy_prompts", "params:synergy.prompts_per_category"],
                outputs="synergy_prompt_set",
                name="select_synergy_prompts",
            )
        ]
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """Every model in ``variants.synergy_models`` in its own namespace, each selecting the same prompt set."""

    def ablated_template(model: str) -> Pipeline:
        template = prompt_selection_pipeline() + measurement_pipeline() + ablation_pipeline()
        return template + head_output_spread_pipeline() if model == BASE else template

    # Two instantiations: Kedro refuses a shared input that a template does not read, and baselines read no spread.
    ablated = per_model(
        ablated_template, variants.evaluated_models, shared_inputs={"synergy_prompts", BASE_HEAD_OUTPUT_SPREAD}
    )
    baselines = per_model(
        lambda _: prompt_selection_pipeline() + measurement_pipeline(),
        variants.baselines,
        shared_inputs={"synergy_prompts"},
    )
    return ablated + baselines
