"""finetune nodes: variant examples -> LoRA adapter -> merged model, with the training log and a summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from datasets import DatasetDict
from matplotlib.figure import Figure

from metasyn.lm.models import LanguageModel
from metasyn.metacognition import finetuning
from metasyn.metacognition.finetuning import Adapter


def prepare_examples(training_examples: DatasetDict, seed: int, targets: str) -> DatasetDict:
    """Validate the training examples and apply the variant's target transform (a control's altered signal)."""
    return finetuning.variant_examples(training_examples, targets, seed)


def train_adapter(
    examples: DatasetDict,
    base_model: LanguageModel,
    lora: dict,
    training: dict,
    checkpoint_dir: Path,
    early_stopping: dict | None,
    seed: int,
    variant_lora: dict,
) -> tuple[Adapter, pd.DataFrame, dict]:
    """Train the variant's LoRA adapter (its ``lora`` fields over finetune.lora) to a validation plateau."""
    settings = {**lora, **variant_lora}
    return finetuning.train_adapter(base_model, examples, settings, training, checkpoint_dir, seed, early_stopping)


def merge_adapter(
    base_model: LanguageModel, adapter: Adapter, examples: DatasetDict, merge_check: dict
) -> tuple[LanguageModel, dict]:
    """Merge the adapter into the base weights, checked as stored on the first validation prompts."""
    check_prompts = examples["validation"]["prompt"][: merge_check["prompts"]]
    return finetuning.merge_adapter(base_model, adapter, check_prompts, merge_check["relative_tolerance"])


def plot_loss_curve(training_log: pd.DataFrame) -> Figure:
    """Training and validation loss over the fine-tune."""
    return finetuning.loss_curve_figure(training_log)


def summarize_training(training_run: dict, training_log: pd.DataFrame, merge_check: dict) -> dict:
    """The fine-tune's summary record (trainable parameters, losses, wall time, device, merge check)."""
    return finetuning.training_summary(training_run, training_log, merge_check)
