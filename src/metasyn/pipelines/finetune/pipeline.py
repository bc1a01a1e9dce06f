"""finetune pipeline: one template, instantiated per fine-tune variant as a Kedro namespace."""

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG, bind, per_model
from metasyn.pipelines.finetune import nodes
from metasyn.pipelines.variants import Variants


def create_template(variant_options: Mapping[str, Any]) -> Pipeline:
    """One variant's fine-tune, before namespacing: examples -> adapter -> merged model -> summary."""
    return pipeline(
        [
            node(
                func=bind(nodes.prepare_examples, variant_options=dict(variant_options)),
                inputs=["training_examples", "params:finetune.seed"],
                outputs="sft_examples",
                name="prepare_examples",
            ),
            node(
                func=nodes.train_adapter,
                inputs=[
                    "sft_examples",
                    "base.model",
                    "params:finetune.lora",
                    "params:finetune.training",
                    "adapter_checkpoints",
                    "params:finetune.seed",
                ],
                outputs=["adapter", "training_log", "training_run"],
                name="train_adapter",
                tags=[GPU_TAG],
            ),
            node(
                func=nodes.merge_adapter,
                inputs=["base.model", "adapter", "sft_examples", "params:finetune.merge_check"],
                outputs=["model", "merge_check"],
                name="merge_adapter",
                tags=[GPU_TAG],
            ),
            node(func=nodes.plot_loss_curve, inputs="training_log", outputs="loss_curve", name="plot_loss_curve"),
            node(
                func=nodes.summarize_training,
                inputs=["training_run", "training_log", "merge_check"],
                outputs="training_summary",
                name="summarize_training",
            ),
        ]
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """The fine-tune template once per variant in ``variants.finetuned`` (metacog, control_shuffled, ...)."""
    return per_model(
        lambda variant: create_template(variants.finetuned[variant]),
        variants.finetuned_names,
        shared_inputs={"training_examples", "base.model"},
    )
