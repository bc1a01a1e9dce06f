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
            # Internal versus stated confidence: what the residual stream knows about correctness.
            node(
                func=nodes.capture_residual_activations,
                inputs=[
                    "model",
                    "stated_outputs",
                    "test_questions",
                    "params:calibration.probes",
                    "params:calibration.generation.dtype",
                ],
                outputs=["residual_activations", "residual_activation_index"],
                name="capture_residual_activations",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.probe_correctness,
                inputs=[
                    "residual_activations",
                    "residual_activation_index",
                    "calibration_outputs",
                    "params:calibration.probes",
                    "params:calibration.metrics",
                ],
                outputs="probe_aurocs",
                name="probe_correctness",
            ),
            # Distributional self-calibration: does the model know its own output distribution?
            node(
                func=nodes.sample_open_answers,
                inputs=[
                    "model",
                    "open_prompts",
                    "params:calibration.distributional",
                    "params:calibration.generation.dtype",
                ],
                outputs="open_answers",
                name="sample_open_answers",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.report_open_distributions,
                inputs=[
                    "model",
                    "open_prompts",
                    "params:calibration.distributional",
                    "params:calibration.generation.dtype",
                ],
                outputs="reported_distributions",
                name="report_open_distributions",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.measure_distributional_calibration,
                inputs=[
                    "open_answers",
                    "reported_distributions",
                    "params:calibration.distributional",
                    "params:calibration.metrics",
                ],
                outputs=["distributional_kl", "distributional_summary"],
                name="measure_distributional_calibration",
            ),
            # Judgment: can / uncertain / cannot, before answering.
            node(
                func=nodes.generate_judgments,
                inputs=["model", "test_questions", "params:calibration.generation"],
                outputs="judgment_generations",
                name="generate_judgments",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.score_judgments,
                inputs=["judgment_generations", "test_questions"],
                outputs="judgment_outputs",
                name="score_judgments",
            ),
            node(
                func=nodes.measure_judgments,
                inputs=["judgment_outputs", "params:calibration.metrics"],
                outputs="judgment_metrics",
                name="measure_judgments",
            ),
        ]
    )


def _by_model(func, dataset: str, models: list[str], output: str) -> node:
    return node(
        func=func, inputs={model: f"{model}.{dataset}" for model in models}, outputs=output, name=f"combine_{dataset}"
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
            per_model(
                evaluation_template,
                models,
                shared_inputs={"test_questions", "calibration_question_pairs", "open_prompts"},
            ),
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
            _by_model(nodes.combine_by_model, "probe_aurocs", models, "probe_auroc_table"),
            _by_model(nodes.combine_by_model, "judgment_metrics", models, "judgment_metrics_table"),
            _by_model(nodes.combine_by_model, "distributional_kl", models, "distributional_kl_table"),
            _by_model(
                nodes.combine_distributional_summaries, "distributional_summary", models, "distributional_summary_table"
            ),
            node(
                func=nodes.plot_judgment_confusion,
                inputs={model: f"{model}.judgment_outputs" for model in models},
                outputs="judgment_confusion",
                name="plot_judgment_confusion",
            ),
            node(
                func=nodes.plot_metrics_by_domain,
                inputs=["calibration_metrics_table", "params:calibration.verdict_method"],
                outputs="calibration_metrics_by_domain",
                name="plot_metrics_by_domain",
            ),
        ]
    )
