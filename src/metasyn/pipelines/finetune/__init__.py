"""finetune pipeline: LoRA metacognition fine-tuning with TRL, a shuffled-target control, and the adapter merge."""

from metasyn.pipelines.finetune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
