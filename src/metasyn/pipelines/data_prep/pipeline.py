"""data_prep pipeline: consistency-based confidence targets and the fine-tuning dataset."""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG
from metasyn.pipelines.data_prep import nodes
from metasyn.pipelines.variants import Variants


def create_pipeline(variants: Variants) -> Pipeline:
    """Questions -> samples -> consistency -> bins -> targets -> training examples and test questions."""
    # One namespace (a kedro-viz group, one SLURM job); dataset names stay unprefixed for the catalog.
    return pipeline(
        [
            node(nodes.check_sampling, "params:data_prep.sampling", "sampling_settings", name="check_sampling"),
            node(
                nodes.assemble_questions,
                ["params:data_prep.sources", "params:data_prep.seed"],
                "questions",
                name="assemble_questions",
            ),
            node(
                nodes.split_questions,
                ["questions", "params:data_prep.split", "params:data_prep.seed"],
                "question_splits",
                name="split_questions",
            ),
            node(
                nodes.sample_answers,
                ["question_splits", "base.model", "sampling_settings", "params:data_prep.seed"],
                "answer_samples",
                name="sample_answers",
                tags=[GPU_TAG],
            ),
            node(
                nodes.score_consistency,
                ["answer_samples", "question_splits"],
                "question_consistency",
                name="score_consistency",
            ),
            node(
                nodes.fit_consistency_bins,
                ["question_consistency", "params:data_prep.targets"],
                "consistency_bins",
                name="fit_consistency_bins",
            ),
            node(
                nodes.assign_targets,
                ["question_consistency", "consistency_bins", "params:data_prep.targets", "params:data_prep.seed"],
                "confidence_targets",
                name="assign_targets",
            ),
            node(
                nodes.build_training_examples,
                ["confidence_targets", "question_splits", "params:data_prep.examples", "params:data_prep.seed"],
                "training_examples",
                name="build_training_examples",
            ),
            node(
                nodes.select_test_questions,
                ["question_splits", "question_consistency"],
                "test_questions",
                name="select_test_questions",
            ),
            node(
                nodes.plot_consistency,
                ["question_consistency", "consistency_bins"],
                "consistency_figure",
                name="plot_consistency",
            ),
        ],
        namespace="data_prep",
        prefix_datasets_with_namespace=False,
    )
