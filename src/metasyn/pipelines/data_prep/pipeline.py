"""data_prep pipeline: consistency-based confidence targets and the fine-tuning dataset."""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG
from metasyn.pipelines.data_prep import nodes
from metasyn.pipelines.variants import Variants


def create_pipeline(variants: Variants) -> Pipeline:
    """Questions -> samples (saved per batch) and greedy answers -> consistency -> bins -> targets -> training examples (those that
    fit) and test questions."""
    # One namespace (a kedro-viz group, one SLURM job); dataset names stay unprefixed for the catalog.
    return pipeline(
        [
            node(
                func=nodes.check_sampling,
                inputs="params:data_prep.sampling",
                outputs="sampling_settings",
                name="check_sampling",
            ),
            node(
                func=nodes.assemble_questions,
                inputs=["params:data_prep.sources", "params:data_prep.seed"],
                outputs="questions",
                name="assemble_questions",
            ),
            node(
                func=nodes.split_questions,
                inputs=["questions", "params:data_prep.split", "params:data_prep.seed"],
                outputs="question_splits",
                name="split_questions",
            ),
            node(
                func=nodes.sample_answers,
                inputs=[
                    "question_splits",
                    "base.model",
                    "sampling_settings",
                    "params:data_prep.seed",
                    "answer_sample_batches_saved",
                ],
                outputs="answer_sample_batches",
                name="sample_answers",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.generate_reference_answers,
                inputs=["question_splits", "base.model", "sampling_settings"],
                outputs="reference_answer_outputs",
                name="generate_reference_answers",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.score_answer_samples,
                inputs=["answer_sample_batches", "reference_answer_outputs", "question_splits", "sampling_settings"],
                outputs=["answer_samples", "reference_answers"],
                name="score_answer_samples",
                tags=[GPU_TAG],  # the nli matcher runs a classifier on the device
            ),
            node(
                func=nodes.score_consistency,
                inputs=["answer_samples", "reference_answers", "question_splits"],
                outputs="question_consistency",
                name="score_consistency",
            ),
            node(
                func=nodes.fit_consistency_bins,
                inputs=["question_consistency", "params:data_prep.targets"],
                outputs="consistency_bins",
                name="fit_consistency_bins",
            ),
            node(
                func=nodes.assign_targets,
                inputs=[
                    "question_consistency",
                    "consistency_bins",
                    "params:data_prep.targets",
                    "params:data_prep.seed",
                ],
                outputs="confidence_targets",
                name="assign_targets",
            ),
            node(
                func=nodes.build_training_examples,
                inputs=["confidence_targets", "question_splits", "params:data_prep.examples", "params:data_prep.seed"],
                outputs="candidate_training_examples",
                name="build_training_examples",
            ),
            node(
                func=nodes.drop_long_examples,
                inputs=["candidate_training_examples", "base.model", "params:finetune.training.max_length"],
                outputs=["training_examples", "example_lengths"],
                name="drop_long_examples",
            ),
            node(
                func=nodes.select_test_questions,
                inputs=["question_splits", "question_consistency"],
                outputs="test_questions",
                name="select_test_questions",
            ),
            node(
                func=nodes.plot_consistency,
                inputs=["question_consistency", "consistency_bins"],
                outputs="consistency_figure",
                name="plot_consistency",
            ),
            node(
                func=nodes.plot_example_lengths,
                inputs=["example_lengths", "params:finetune.training.max_length"],
                outputs="example_lengths_figure",
                name="plot_example_lengths",
            ),
        ],
        namespace="data_prep",
        prefix_datasets_with_namespace=False,
    )
