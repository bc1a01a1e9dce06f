"""calibration pipeline: one modular pipeline per evaluated model, then comparison, table and figures."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from metasyn.pipelines import GPU_TAG, bind, per_model
from metasyn.pipelines.calibration import nodes
from metasyn.pipelines.variants import Variants


def evaluation_template(model_name: str) -> Pipeline:
    """Generate, score and measure one model, before namespacing (``<model>.calibration_*`` after)."""
    return Pipeline(
        [
            node(
                func=nodes.generate_confidence_answers,
                inputs=[
                    "model",
                    "test_questions",
                    "params:calibration.generation",
                    "params:calibration.methods",
                    "params:calibration.verdict_method",
                ],
                outputs="confidence_generations",
                name="generate_confidence_answers",
                tags=[GPU_TAG],
            ),
            node(
                func=bind(nodes.score_confidence_answers, model_name=model_name),
                inputs=["confidence_generations", "test_questions", "params:calibration.matcher"],
                outputs="stated_outputs",
                name="score_confidence_answers",
            ),
            node(
                func=nodes.elicit_confidences,
                inputs=[
                    "model",
                    "stated_outputs",
                    "test_questions",
                    "params:calibration.methods",
                    "params:calibration.generation",
                ],
                outputs="calibration_outputs",
                name="elicit_confidences",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.generate_pairwise_choices,
                inputs=["model", "test_questions", "calibration_question_pairs", "params:calibration.generation"],
                outputs="pairwise_generations",
                name="generate_pairwise_choices",
                tags=[GPU_TAG],
            ),
            node(
                func=bind(nodes.score_pairwise_choices, model_name=model_name),
                inputs=["pairwise_generations", "calibration_outputs", "test_questions"],
                outputs="pairwise_outputs",
                name="score_pairwise_choices",
            ),
            node(
                func=nodes.compute_calibration_metrics,
                inputs=[
                    "calibration_outputs",
                    "pairwise_outputs",
                    "params:calibration.methods",
                    "params:calibration.metrics",
                ],
                outputs="calibration_metrics",
                name="compute_calibration_metrics",
            ),
        ]
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """Pairs -> per-model outputs and metrics -> fine-tuned-minus-base differences -> table and figures."""
    models = variants.evaluated_models
    # The comparisons stay outside the variant namespaces: a namespace is one SLURM job, and a fine-tune's
    # job should not wait for the base model's.
    comparisons = [
        node(
            func=nodes.compare_with_base,
            inputs=[
                f"{variant}.calibration_outputs",
                f"{variant}.pairwise_outputs",
                "base.calibration_outputs",
                "base.pairwise_outputs",
                "params:calibration.methods",
                "params:calibration.metrics",
            ],
            outputs=f"{variant}.calibration_differences",
            name=f"compare_{variant}_with_base",
        )
        for variant in variants.finetuned_names
    ]
    calibration_outputs = [f"{model}.calibration_outputs" for model in models]
    return Pipeline(
        [
            node(
                func=nodes.pair_test_questions,
                inputs=["test_questions", "params:calibration.pairs"],
                outputs="calibration_question_pairs",
                name="pair_test_questions",
            ),
            per_model(evaluation_template, models, shared_inputs={"test_questions", "calibration_question_pairs"}),
            *comparisons,
            node(
                func=nodes.combine_calibration_metrics,
                inputs=[f"{model}.calibration_metrics" for model in models]
                + [f"{variant}.calibration_differences" for variant in variants.finetuned_names],
                outputs="calibration_metrics_table",
                name="combine_calibration_metrics",
            ),
            node(
                func=nodes.summarize_calibration_metrics,
                inputs="calibration_metrics_table",
                outputs="calibration_metrics_summary",
                name="summarize_calibration_metrics",
            ),
            node(
                func=nodes.plot_reliability_diagrams,
                inputs=[
                    "params:calibration.metrics.ece_bins",
                    "params:calibration.verdict_method",
                    *calibration_outputs,
                ],
                outputs="calibration_reliability_diagrams",
                name="plot_reliability_diagrams",
            ),
            node(
                func=nodes.plot_risk_coverage,
                inputs=["params:calibration.verdict_method", *calibration_outputs],
                outputs="calibration_risk_coverage",
                name="plot_risk_coverage",
            ),
            node(
                func=nodes.plot_metrics_by_domain,
                inputs=["calibration_metrics_table", "params:calibration.verdict_method"],
                outputs="calibration_metrics_by_domain",
                name="plot_metrics_by_domain",
            ),
        ]
    )
