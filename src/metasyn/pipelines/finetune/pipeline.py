"""finetune pipeline: one template, instantiated per replicate (variant and seed) as a Kedro namespace."""

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG, bind, per_model
from metasyn.pipelines.finetune import nodes
from metasyn.pipelines.variants import LORA_OPTION, TARGETS_OPTION, Variants


def create_template(variant_options: Mapping[str, Any], seed: int) -> Pipeline:
    """One replicate's fine-tune, before namespacing: examples -> adapter -> merged model -> summary.

    ``seed`` is the replicate's own (``Variants.namespace_seeds``), fixed here rather than read from
    ``params:finetune.seed``: it seeds a control's target transform and the training run. The variant's options
    (``targets``, ``lora``) are fixed here too: they decide what the template trains, not a node's data.
    """
    return pipeline(
        [
            node(
                func=bind(nodes.prepare_examples, targets=variant_options[TARGETS_OPTION], seed=seed),
                inputs="training_examples",
                outputs="sft_examples",
                name="prepare_examples",
            ),
            node(
                func=bind(nodes.train_adapter, seed=seed, variant_lora=dict(variant_options.get(LORA_OPTION) or {})),
                inputs=[
                    "sft_examples",
                    "base.model",
                    "params:finetune.lora",
                    "params:finetune.training",
                    "adapter_checkpoints",
                    "params:finetune.early_stopping",
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
    """The fine-tune template once per replicate namespace (metacog, metacog_seed1, control_shuffled, ...)."""
    return per_model(
        lambda namespace: create_template(
            variants.finetuned[variants.variant_of[namespace]], variants.namespace_seeds[namespace]
        ),
        variants.finetuned_names,
        shared_inputs={"training_examples", "base.model"},
    )
