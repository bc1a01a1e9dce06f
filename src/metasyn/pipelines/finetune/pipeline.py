"""finetune pipeline: one template, instantiated per fine-tune variant as a Kedro namespace."""

from kedro.pipeline import Pipeline, node, pipeline

from metasyn.pipelines import GPU_TAG
from metasyn.pipelines.finetune import nodes
from metasyn.pipelines.variants import Variants

# Shared across variants: left out of each variant's namespace.
SHARED_PARAMETERS = ["finetune.lora", "finetune.training", "finetune.merge_check", "finetune.seed"]


def create_template() -> Pipeline:
    """One variant's fine-tune, before namespacing: examples -> adapter -> merged model -> summary."""
    return pipeline(
        [
            node(
                nodes.prepare_examples,
                ["training_examples", "params:variant_options", "params:finetune.seed"],
                "sft_examples",
                name="prepare_examples",
            ),
            node(
                nodes.train_adapter,
                [
                    "sft_examples",
                    "base.model",
                    "params:finetune.lora",
                    "params:finetune.training",
                    "adapter_checkpoints",
                    "params:finetune.seed",
                ],
                ["adapter", "training_log", "training_run"],
                name="train_adapter",
                tags=[GPU_TAG],
            ),
            node(
                nodes.merge_adapter,
                ["base.model", "adapter", "sft_examples", "params:finetune.merge_check"],
                ["model", "merge_check"],
                name="merge_adapter",
                tags=[GPU_TAG],
            ),
            node(nodes.plot_loss_curve, "training_log", "loss_curve", name="plot_loss_curve"),
            node(
                nodes.summarise_training,
                ["training_run", "training_log", "merge_check"],
                "training_summary",
                name="summarise_training",
            ),
        ]
    )


def create_pipeline(variants: Variants) -> Pipeline:
    """The fine-tune template once per variant in ``variants.finetuned`` (metacog, control_shuffled, ...)."""
    template = create_template()
    return sum(
        (
            pipeline(
                template,
                namespace=variant,
                inputs={"training_examples", "base.model"},
                parameters={
                    "variant_options": f"variants.finetuned.{variant}",
                    **{p: p for p in SHARED_PARAMETERS},
                },
            )
            for variant in variants.finetuned_names
        ),
        Pipeline([]),
    )
