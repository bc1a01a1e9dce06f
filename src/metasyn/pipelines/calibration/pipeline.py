"""calibration pipeline: one modular pipeline per evaluated model, then comparison, table and figures."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG, bind
from metasyn.pipelines.calibration import nodes
from metasyn.pipelines.variants import Variants

SHARED_PARAMETERS = {
    "params:calibration.generation",
    "params:calibration.matcher",
    "params:calibration.metrics",
}


def _evaluate_model(model_name: str) -> Pipeline:
    """Generate, score and measure one model; runs in the model's namespace (``<model>.calibration_*``)."""
    template = Pipeline(
        [
            node(
                nodes.generate_confidence_answers,
                ["model", "test_questions", "params:calibration.generation"],
                "confidence_generations",
                name="generate_confidence_answers",
                tags=[GPU_TAG],
            ),
            node(
                bind(nodes.score_confidence_answers, model_name=model_name),
                ["confidence_generations", "test_questions", "params:calibration.matcher"],
                "calibration_outputs",
                name="score_confidence_answers",
            ),
            node(
                nodes.generate_pairwise_choices,
                ["model", "test_questions", "calibration_question_pairs", "params:calibration.generation"],
                "pairwise_generations",
                name="generate_pairwise_choices",
                tags=[GPU_TAG],
            ),
            node(
                bind(nodes.score_pairwise_choices, model_name=model_name),
                ["pairwise_generations", "calibration_outputs", "test_questions"],
                "pairwise_outputs",
                name="score_pairwise_choices",
            ),
            node(
                nodes.compute_calibration_metrics,
                ["calibration_outputs", "pairwise_outputs", "params:calibration.metrics"],
                "calibration_metrics",
                name="compute_calibration_metrics",
            ),
        ]
    )
    return pipeline(
        template,
        namespace=model_name,
        inputs={"test_questions", "calibration_question_pairs"},
        parameters=SHARED_PARAMETERS,
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """Pairs -> per-model outputs and metrics -> fine-tuned-minus-base differences -> table and figures."""
    models = variants.evaluated_models
    # The comparisons stay outside the variant namespaces: a namespace is one SLURM job, and a fine-tune's
    # job should not wait for the base model's.
    comparisons = [
        node(
            nodes.compare_with_base,
            [
                f"{variant}.calibration_outputs",
                f"{variant}.pairwise_outputs",
                "base.calibration_outputs",
                "base.pairwise_outputs",
                "params:calibration.metrics",
            ],
            f"{variant}.calibration_differences",
            name=f"compare_{variant}_with_base",
        )
        for variant in variants.finetuned_names
    ]
    calibration_outputs = [f"{model}.calibration_outputs" for model in models]
    return Pipeline(
        [
            node(
                nodes.pair_test_questions,
                ["test_questions", "params:calibration.pairs"],
                "calibration_question_pairs",
                name="pair_test_questions",
            ),
            *(_evaluate_model(model) for model in models),
            *comparisons,
            node(
                nodes.combine_calibration_metrics,
                [f"{model}.calibration_metrics" for model in models]
                + [f"{variant}.calibration_differences" for variant in variants.finetuned_names],
                "calibration_metrics_table",
                name="combine_calibration_metrics",
            ),
            node(
                nodes.summarize_calibration_metrics,
                "calibration_metrics_table",
                "calibration_metrics_summary",
                name="summarize_calibration_metrics",
            ),
            node(
                nodes.plot_reliability_diagrams,
                ["params:calibration.metrics.ece_bins", *calibration_outputs],
                "calibration_reliability_diagrams",
                name="plot_reliability_diagrams",
            ),
            node(
                nodes.plot_risk_coverage,
                calibration_outputs,
                "calibration_risk_coverage",
                name="plot_risk_coverage",
            ),
            node(
                nodes.plot_metrics_by_domain,
                "calibration_metrics_table",
                "calibration_metrics_by_domain",
                name="plot_metrics_by_domain",
            ),
        ]
    )
