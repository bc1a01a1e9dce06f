"""A LoRA training step on the embedded model as the demo takes it, with and without completion-only scoring.

    .venv/bin/python benchmarks/training_benchmark.py [--steps 8]

TRL's fused LM head scores every position on a CPU, prompt included, although the completion-only loss reads
only the completion's; ``finetuning.scoring_completion_tokens_only`` makes it score the labelled positions alone
(as TRL does on a GPU). Both runs train ``--steps`` steps of conf/base's settings (LoRA r = 16 on q/k/v/o,
batch 8, bfloat16 autocast, length-grouped batches) on the same 64 examples shaped like the demo's: two thirds
single-question (about 110 tokens, a completion of about 12), one third pairwise (about 180, a completion of
about 20). It prints the seconds per step and each step's loss; the losses must agree, the time need not.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import yaml
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

from metasyn.lm.models import load_model
from metasyn.lm.prompts import (
    assistant_message,
    confidence_completion,
    confidence_messages,
    pairwise_completion,
    pairwise_messages,
)
from metasyn.metacognition.finetuning import lora_config, scoring_completion_tokens_only
from metasyn.questions.generated import factual_questions

SPEC = "embedded:smollm2-135m-instruct"
PARAMETERS = Path(__file__).parents[1] / "conf" / "base" / "parameters_finetune.yml"


def demo_shaped_examples(count: int) -> Dataset:
    """Single-question and pairwise examples in data_prep's prompt/completion form, two of the first to one."""
    questions = factual_questions(None).to_dict("records")
    rows = []
    for index in range(count):
        first, second = questions[index % len(questions)], questions[(index + 7) % len(questions)]
        if index % 3 == 2:
            prompt = pairwise_messages(first, second)
            completion = pairwise_completion(1 + index % 2, first["answer"], second["answer"])
        else:
            prompt = confidence_messages(first)
            completion = confidence_completion(first["answer"], (index % 10) / 10)
        rows.append({"prompt": prompt, "completion": assistant_message(completion)})
    return Dataset.from_list(rows)


def train(steps: int, scoring: contextlib.AbstractContextManager) -> tuple[float, list[float]]:
    """Seconds per step (after one warm-up step) and every step's loss."""
    settings = yaml.safe_load(PARAMETERS.read_text())["finetune"]
    lm = load_model(SPEC, device="cpu", dtype="float32")
    with tempfile.TemporaryDirectory() as output_dir:
        args = SFTConfig(
            output_dir=output_dir,
            seed=0,
            use_cpu=True,
            max_steps=steps + 1,
            per_device_train_batch_size=settings["training"]["per_device_train_batch_size"],
            learning_rate=settings["training"]["learning_rate"],
            lr_scheduler_type="constant",
            bf16=settings["training"]["bf16"],
            train_sampling_strategy=settings["training"]["train_sampling_strategy"],
            completion_only_loss=True,
            activation_checkpointing=False,
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=lm.model,
            args=args,
            train_dataset=demo_shaped_examples(64),
            processing_class=lm.tokenizer,
            peft_config=lora_config(settings["lora"]),
        )
        step_ends = []
        trainer.add_callback(_StepClock(step_ends))
        trainer.remove_callback(PrinterCallback)  # the figures below, not a log line per step
        with scoring:
            trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1), losses


class _StepClock(TrainerCallback):
    """Records when each optimizer step ends."""

    def __init__(self, ends: list[float]) -> None:
        self.ends = ends

    def on_step_end(self, *args, **kwargs) -> None:
        self.ends.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run, after one warm-up step")
    steps = parser.parse_args().steps
    for name, scoring in (
        ("every position", contextlib.nullcontext()),
        ("completion only", scoring_completion_tokens_only()),
    ):
        per_step, losses = train(steps, scoring)
        print(f"{name:>16}: {per_step:5.2f} s per step; losses {', '.join(f'{loss:.5f}' for loss in losses)}")


if __name__ == "__main__":
    main()
