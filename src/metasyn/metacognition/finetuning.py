"""LoRA fine-tuning to state calibrated confidence (Steyvers et al. 2025, arXiv 2510.05126), with TRL.

The fine-tune trains attention projections only: the synergy analysis reads attention heads, so a change in
synergy can be put down to how the heads process information, not to the MLPs. The controls see the same examples
with their targets transformed (``metasyn.metacognition.controls``) and may change the LoRA settings. After training, the adapter is merged into
a copy of the base weights so that every later pipeline reads a fine-tune as a plain model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import shutil
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import trl.trainer.utils
from datasets import DatasetDict
from matplotlib.figure import Figure
from peft import (
    LoraConfig,
    PeftModel,
    TaskType,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from safetensors import SafetensorError, safe_open
from transformers import EarlyStoppingCallback, PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints
from trl import SFTConfig, SFTTrainer

from metasyn.atomic import atomic_file
from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import Messages, render_prompts
from metasyn.lm.resume import fingerprint
from metasyn.metacognition import controls
from metasyn.metacognition.examples import example_token_lengths, target_completion
from metasyn.metacognition.judgment import ABILITY_CLASSES

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation")
EXAMPLE_COLUMNS = (
    "prompt",
    "completion",
    "task",
    "answers",
    "target_confidence",
    "preferred",
    "ability",
)
# Answers each task's completion states: one for the single-question and judgment tasks, one per question for
# pairwise.
TASK_ANSWER_COUNTS = {"single": 1, "judgment": 1, "pairwise": 2}
RUN_CONFIG_FILE = "run_config.json"
# What torch.save writes in a checkpoint (optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin).
TORCH_FILE_SUFFIXES = (".pt", ".pth", ".bin")


class Adapter(NamedTuple):
    """A trained LoRA adapter: its PEFT config and weights (the state dict ``PeftModel.save_pretrained`` writes)."""

    config: LoraConfig
    weights: dict[str, torch.Tensor]


class TrainingResult(NamedTuple):
    """What a fine-tune leaves behind: the adapter, the Trainer's log, and facts about the run."""

    adapter: Adapter
    log: pd.DataFrame
    run: dict


def _is_conversation(messages: object, roles: set[str]) -> bool:
    return (
        isinstance(messages, list)
        and len(messages) > 0
        and all(
            isinstance(m, Mapping) and m.get("role") in roles and isinstance(m.get("content"), str) for m in messages
        )
    )


def _example_problem(example: Mapping) -> str | None:
    """What is wrong with one training example, or None."""
    task = example["task"]
    if task not in TASK_ANSWER_COUNTS:
        return f"task {task!r} is not one of {sorted(TASK_ANSWER_COUNTS)}"
    if not _is_conversation(example["prompt"], {"system", "user"}) or example["prompt"][-1]["role"] != "user":
        return "prompt is not a list of {role, content} messages ending with the user turn"
    if not _is_conversation(example["completion"], {"assistant"}) or len(example["completion"]) != 1:
        return "completion is not a list of exactly one assistant message"
    if len(example["answers"] or []) != TASK_ANSWER_COUNTS[task]:
        return f"a {task} example needs {TASK_ANSWER_COUNTS[task]} answer(s), has {example['answers']}"
    if task == "single" and not 0.0 <= example["target_confidence"] <= 1.0:
        return f"target_confidence {example['target_confidence']} is not a probability in [0, 1]"
    if task == "pairwise" and example["preferred"] not in (1, 2):
        return f"preferred is {example['preferred']}, not 1 or 2"
    if task == "judgment" and example["ability"] not in ABILITY_CLASSES:
        return f"ability {example['ability']!r} is not one of {list(ABILITY_CLASSES)}"
    # The control rebuilds completions from the fields; a mismatch here would make the two variants differ in
    # more than their targets.
    if example["completion"][0]["content"] != target_completion(example):
        return f"completion {example['completion'][0]['content']!r} does not state its answers and target"
    return None


def validate_training_examples(examples: DatasetDict) -> None:
    """Check splits, columns and every example; raise a ValueError that says what is wrong and how to fix it."""
    splits = list(examples) if isinstance(examples, Mapping) else []
    if not isinstance(examples, DatasetDict) or any(split not in splits for split in SPLITS):
        raise ValueError(
            f"training_examples must be a datasets.DatasetDict with splits {list(SPLITS)} (data_prep writes it); "
            f"got {type(examples).__name__} with splits {splits}."
        )
    for split in SPLITS:
        dataset = examples[split]
        if len(dataset) == 0:
            raise ValueError(
                f"The {split!r} split of training_examples is empty: give data_prep more questions "
                "(data_prep.sources in parameters_data_prep.yml) and run it again."
            )
        missing = [column for column in EXAMPLE_COLUMNS if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"The {split!r} split of training_examples lacks columns {missing}; expected {list(EXAMPLE_COLUMNS)} "
                "(see the data_prep pipeline)."
            )
        rows = dataset.select_columns(list(EXAMPLE_COLUMNS))
        problems = [
            f"{split}[{index}]: {problem}" for index, row in enumerate(rows) if (problem := _example_problem(row))
        ]
        if problems:
            raise ValueError(
                f"{len(problems)} malformed training example(s) in the {split!r} split, e.g. "
                + "; ".join(problems[:3])
                + ". Rebuild training_examples with the data_prep pipeline."
            )


def variant_examples(examples: DatasetDict, targets: str, seed: int) -> DatasetDict:
    """The examples a fine-tune variant trains on: validated, then its target transform applied to each split."""
    validate_training_examples(examples)
    transform = controls.TARGET_TRANSFORMS[targets]
    if transform is controls.consistency_targets:
        return examples
    return DatasetDict({split: transform(dataset, seed) for split, dataset in examples.items()})


def lora_config(settings: Mapping) -> LoraConfig:
    """A causal-LM LoRA config from the ``finetune.lora`` parameters (any ``peft.LoraConfig`` field)."""
    return LoraConfig(task_type=TaskType.CAUSAL_LM, **settings)


def check_target_modules(model: torch.nn.Module, target_modules: Sequence[str]) -> None:
    """Fail unless every LoRA target names linear layers of the model (PEFT only fails when none match)."""
    if isinstance(target_modules, str):
        raise ValueError(f"LoRA target_modules must be a list of module names, got the string {target_modules!r}.")
    linear_names = {
        name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    }
    missing = sorted(set(target_modules) - linear_names)
    if missing:
        raise ValueError(
            f"LoRA target module(s) {missing} do not exist in {type(model).__name__}, whose linear layers are "
            f"{sorted(linear_names)}. Set finetune.lora.target_modules to the model's attention projections "
            "(q_proj, k_proj, v_proj, o_proj for Llama and Gemma)."
        )


def check_sequence_lengths(tokenizer: PreTrainedTokenizerBase, examples: DatasetDict, max_length: int | None) -> None:
    """Fail when a prompt plus completion exceeds ``max_length``: truncation would cut off the target.

    data_prep already drops such examples (``examples.drop_long_examples``); this is the last guard, for
    examples built with another tokenizer or a smaller ``max_length``.
    """
    if max_length is None:
        return
    for split, dataset in examples.items():
        lengths = example_token_lengths(tokenizer, dataset)
        too_long = sum(length > max_length for length in lengths)
        if too_long:
            raise ValueError(
                f"{too_long} {split} example(s) are longer than max_length={max_length} tokens (the longest has "
                f"{max(lengths)}); truncation would cut off their completions. Raise finetune.training.max_length, or "
                "rebuild training_examples with data_prep at this max_length (it drops longer examples)."
            )


def _examples_digest(examples: DatasetDict) -> str:
    content = {split: dataset.select_columns(["prompt", "completion"]).to_list() for split, dataset in examples.items()}
    return fingerprint(content)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or None when it can.

    The Trainer writes ``trainer_state.json`` last, so a save cut short lacks it; a file cut short later no
    longer parses: a safetensors file misses part of the length its header declares, a torch file (a zip
    archive) its closing directory. Resuming from either would fail or silently restart the step count.
    """
    state = checkpoint / TRAINER_STATE_NAME
    if not state.is_file():
        return f"no {TRAINER_STATE_NAME}: its save did not finish"
    try:
        json.loads(state.read_text())
    except json.JSONDecodeError as error:
        return f"{TRAINER_STATE_NAME} does not parse ({error})"
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(path, "pt"):
                    pass
            elif path.suffix in TORCH_FILE_SUFFIXES:
                zipfile.ZipFile(path).close()
        except (SafetensorError, zipfile.BadZipFile, OSError) as error:
            return f"{path.name} is cut short or damaged ({error})"
    return None


def resumable_checkpoint(checkpoint_dir: Path, run_config: Mapping) -> str | None:
    """The last complete checkpoint in ``checkpoint_dir`` of a run with exactly this configuration, or None.

    Checkpoints of a run with other data or settings cannot be resumed without mixing two runs: they are
    deleted, and training starts afresh. A checkpoint cut short (``checkpoint_problem``) is deleted too, and
    training resumes from the one before it, or starts afresh when none is left.
    """
    current = json.loads(json.dumps(run_config))  # as it reads back from the record
    recorded_file = checkpoint_dir / RUN_CONFIG_FILE
    recorded = json.loads(recorded_file.read_text()) if recorded_file.is_file() else {}
    checkpoints = [Path(path) for path in sort_checkpoints(str(checkpoint_dir))] if checkpoint_dir.is_dir() else []
    if checkpoints and recorded != current:
        changed = sorted(key for key in current.keys() | recorded.keys() if current.get(key) != recorded.get(key))
        logger.warning(
            "Checkpoints in %s come from a run with a different %s; deleting them and starting afresh",
            checkpoint_dir,
            ", ".join(changed),
        )
        for stale in checkpoints:
            shutil.rmtree(stale)
        checkpoints = []
    for checkpoint in reversed(checkpoints):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            logger.info("Resuming from %s, the last complete checkpoint of this run", checkpoint)
            return str(checkpoint)
        logger.warning("Checkpoint %s cannot be resumed from (%s); deleting it", checkpoint, problem)
        shutil.rmtree(checkpoint)
    if checkpoints:
        logger.warning("No complete checkpoint left in %s; training starts afresh", checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: a record cut short by a kill would not parse, and the next run could not resume.
    with atomic_file(recorded_file) as scratch:
        scratch.write_text(json.dumps(current, sort_keys=True, indent=1))
    return None


@contextlib.contextmanager
def scoring_completion_tokens_only() -> Iterator[None]:
    """Let TRL's fused LM head score only the tokens that carry a label, on every device.

    TRL 1.16 scores only labelled positions where Triton runs (CUDA, XPU) and every position elsewhere, to keep
    tile shapes fixed for compilers such as Neuron's. Nothing is compiled on a CPU, and with the completion-only
    loss most positions are the prompt's: scoring them against the 49k-token vocabulary took 45% of a demo-sized
    training step (benchmarks/README.md). The labelled positions get the same log-probabilities either way
    (tests/test_finetune.py), so losses and gradients do not change. The switch is TRL's private
    ``_use_triton`` as ``trl.trainer.utils`` reads it; where a TRL release lacks it, training runs unchanged, at
    full cost, with a warning.
    """
    original = getattr(trl.trainer.utils, "_use_triton", None)
    if original is None:
        logger.warning(
            "This TRL release (%s) has no trl.trainer.utils._use_triton: its fused LM head scores every position "
            "on a CPU, prompt included (same loss, slower training)",
            trl.__version__,
        )
        yield
        return
    trl.trainer.utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl.trainer.utils._use_triton = original


def train_adapter(
    lm: LanguageModel,
    examples: DatasetDict,
    lora: Mapping,
    training: Mapping,
    checkpoint_dir: str | Path,
    seed: int,
    early_stopping: Mapping | None = None,
) -> TrainingResult:
    """Train a LoRA adapter with TRL's SFTTrainer (completion-only loss), resuming an interrupted run.

    ``training`` holds ``trl.SFTConfig`` fields. Checkpoints go to ``checkpoint_dir``. The base model is left
    untouched: PEFT injects its layers into the model it is given, so it gets a deep copy. With
    ``early_stopping`` (``patience``, ``threshold``), training stops once ``patience`` evaluations in a row have
    not lowered the validation loss by more than ``threshold`` (transformers' ``EarlyStoppingCallback``: a
    plateau), and the best checkpoint is kept; that needs ``load_best_model_at_end`` with matching evaluation and
    save strategies in ``training``.
    """
    checkpoint_dir = Path(checkpoint_dir)
    # Train where the model was placed (globals model.device); the Trainer would otherwise take any GPU it sees.
    args = SFTConfig(
        output_dir=str(checkpoint_dir),
        seed=seed,
        use_cpu=lm.model.device.type == "cpu",
        **training,
    )
    check_target_modules(lm.model, lora["target_modules"])
    render_prompts(lm.tokenizer, examples["train"]["prompt"][:1])  # a clear error when there is no chat template
    check_sequence_lengths(lm.tokenizer, examples, args.max_length)
    run_config = {
        "base_model": lm.model.name_or_path,
        "examples": _examples_digest(examples),
        "lora": dict(lora),
        "training": dict(training),
        "seed": seed,
    }
    resume_from = resumable_checkpoint(checkpoint_dir, run_config)

    trainer = SFTTrainer(
        model=copy.deepcopy(lm.model),
        args=args,
        train_dataset=examples["train"],
        eval_dataset=examples["validation"],
        processing_class=lm.tokenizer,
        peft_config=lora_config(lora),
        callbacks=[]
        if early_stopping is None
        else [EarlyStoppingCallback(early_stopping["patience"], early_stopping["threshold"])],
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    logger.info(
        "Training a LoRA adapter on %d examples (%d validation): %d trainable of %d parameters, on %s",
        len(examples["train"]),
        len(examples["validation"]),
        trainable,
        total,
        args.device,
    )
    start = time.perf_counter()
    with scoring_completion_tokens_only():
        trainer.train(resume_from_checkpoint=resume_from)
    weights = {name: tensor.detach().cpu().clone() for name, tensor in get_peft_model_state_dict(trainer.model).items()}
    return TrainingResult(
        adapter=Adapter(trainer.model.peft_config["default"], weights),
        log=pd.DataFrame(trainer.state.log_history),
        run={
            "trainable_parameters": trainable,
            "total_parameters": total,
            "train_examples": len(examples["train"]),
            "validation_examples": len(examples["validation"]),
            "optimizer_steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "best_validation_loss": trainer.state.best_metric,
            "best_step": trainer.state.best_global_step,
            "wall_time_s": time.perf_counter() - start,
            "device": str(args.device),
            "seed": seed,  # which replicate this is, where a variant is trained at several seeds
            "resumed_from_checkpoint": resume_from,
        },
    )


def attach_adapter(model: PreTrainedModel, adapter: Adapter) -> PeftModel:
    """A copy of ``model`` carrying the (unmerged) adapter, in eval mode; ``model`` itself is left untouched."""
    adapted = get_peft_model(copy.deepcopy(model), copy.deepcopy(adapter.config))
    loaded = set_peft_model_state_dict(adapted, adapter.weights)
    unloaded = [key for key in loaded.missing_keys if "lora_" in key]
    if loaded.unexpected_keys or unloaded:
        raise ValueError(
            f"The adapter does not fit {type(model).__name__}: unexpected weights {loaded.unexpected_keys[:3]}, "
            f"missing weights {unloaded[:3]}. Was it trained on another base model?"
        )
    return adapted.eval()


@torch.inference_mode()
def _logits(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).logits.float()


def _max_logit_diff(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], reference: torch.Tensor) -> float:
    """Largest absolute difference between the model's logits (at real tokens) and ``reference``."""
    return float((_logits(model, inputs)[inputs["attention_mask"].bool()] - reference).abs().max())


def _relative(diff: float, adapter_change: float) -> float:
    return diff / adapter_change if adapter_change > 0 else math.inf


def merge_adapter(
    lm: LanguageModel,
    adapter: Adapter,
    check_prompts: Sequence[Messages],
    relative_tolerance: float,
) -> tuple[LanguageModel, dict]:
    """Merge the adapter into a copy of the base weights, stored in the base model's dtype, and check them as stored.

    The reference is base+adapter in float32 (the base weights as stored, the adapter unmerged): the fine-tune
    free of rounding. The merge is done in float32 and its weights are then rounded to ``lm.model.dtype``, in
    which the merged model is returned and saved. The check runs those stored weights (upcast exactly to float32,
    so that bfloat16 arithmetic, which the base model has as much as any fine-tune, does not count) and fails
    when any logit on the check prompts moves further from the reference than ``relative_tolerance`` times the
    largest change the adapter itself makes to the base logits. A merge whose weight update falls below the
    dtype's resolution (the adapter rounded away) reads about 1 and fails instead of passing as the base model.
    """
    texts = render_prompts(lm.tokenizer, check_prompts)
    inputs = lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.model.device)
    adapted = attach_adapter(lm.model, adapter).float()
    reference = _logits(adapted, inputs)[inputs["attention_mask"].bool()]
    with adapted.disable_adapter():
        adapter_change = _max_logit_diff(adapted, inputs, reference)
    merged = adapted.merge_and_unload()  # in float32, so the update is added before any rounding
    float32_diff = _max_logit_diff(merged, inputs, reference)
    merged.to(lm.model.dtype).float()  # the stored weights, exactly, in float32 arithmetic
    stored_diff = _max_logit_diff(merged, inputs, reference)
    dtype = str(lm.model.dtype).removeprefix("torch.")
    check = {
        "dtype": dtype,
        "max_abs_logit_diff": stored_diff,
        "adapter_max_abs_logit_change": adapter_change,
        "relative_logit_diff": _relative(stored_diff, adapter_change),
        "float32_relative_logit_diff": _relative(float32_diff, adapter_change),
        "relative_tolerance": relative_tolerance,
        "prompts": len(texts),
    }
    logger.info(
        "Merged adapter, stored in %s: max |logit(merged) - logit(base+adapter)| = %.3g on %d prompts, %.3g of "
        "the adapter's own max logit change %.3g (relative tolerance %.3g; %.3g before rounding to %s)",
        dtype,
        stored_diff,
        len(texts),
        check["relative_logit_diff"],
        adapter_change,
        relative_tolerance,
        check["float32_relative_logit_diff"],
        dtype,
    )
    if not check["relative_logit_diff"] <= relative_tolerance:
        raise RuntimeError(_merge_failure(check))
    return LanguageModel(merged.to(lm.model.dtype), lm.tokenizer), check


def _merge_failure(check: Mapping) -> str:
    """What a failed merge check means and what to do about it."""
    found = (
        f"The merged model as stored ({check['dtype']}) moves logits by up to {check['max_abs_logit_diff']:.3g} "
        f"from base+adapter, {check['relative_logit_diff']:.3g} times the adapter's own largest logit change "
        f"({check['adapter_max_abs_logit_change']:.3g}); finetune.merge_check.relative_tolerance is "
        f"{check['relative_tolerance']:.3g}. "
    )
    if check["adapter_max_abs_logit_change"] == 0:
        return found + (
            "The adapter changes no logit at all: it is still at its initialisation. Check that training ran "
            "optimizer steps (finetune.training: max_steps, num_train_epochs, learning_rate)."
        )
    if not check["float32_relative_logit_diff"] <= check["relative_tolerance"]:
        return found + (
            f"It is off by {check['float32_relative_logit_diff']:.3g} already in float32, before any rounding: the "
            "merge itself (peft's merge_and_unload) is faulty, not the precision, and the merged model is not the "
            "fine-tune."
        )
    return found + (
        f"Merged in float32 it agrees ({check['float32_relative_logit_diff']:.3g}): rounding the merged weights to "
        f"{check['dtype']} loses or distorts the adapter's update (an update below that dtype's resolution is "
        "lost outright). Store the models in float32 (globals.yml: model.dtype: float32), or make the update larger (a higher "
        "finetune.lora.lora_alpha or finetune.training.learning_rate, or more training steps)."
    )


def training_summary(run: Mapping, log: pd.DataFrame, merge_check: Mapping) -> dict:
    """One JSON-ready record of a fine-tune: size, losses, time, device and the merge check."""
    train, validation = (log[column].dropna().tolist() if column in log else [] for column in ("loss", "eval_loss"))
    return {
        **run,
        "final_train_loss": train[-1] if train else None,
        "initial_validation_loss": validation[0] if validation else None,
        "final_validation_loss": validation[-1] if validation else None,
        "merge_dtype": merge_check["dtype"],
        "merge_max_abs_logit_diff": merge_check["max_abs_logit_diff"],
        "adapter_max_abs_logit_change": merge_check["adapter_max_abs_logit_change"],
        "merge_relative_logit_diff": merge_check["relative_logit_diff"],
        "merge_relative_tolerance": merge_check["relative_tolerance"],
    }


def loss_curve_figure(log: pd.DataFrame) -> Figure:
    """Training and validation loss (completion tokens only) against epoch."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for column, label, style in (
        ("loss", "train", "-"),
        ("eval_loss", "validation", "o-"),
    ):
        if column in log:
            points = log[["epoch", column]].dropna()
            axes.plot(points["epoch"], points[column], style, label=label)
    axes.set(xlabel="epoch", ylabel="loss per completion token", title="LoRA fine-tune")
    axes.legend()
    figure.tight_layout()
    return figure
