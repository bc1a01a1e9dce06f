"""float32 against bfloat16 on the embedded model: sampling, greedy generation and a LoRA training step.

    .venv/bin/python benchmarks/bfloat16_benchmark.py

What it times, each after one warm-up call:
- consistency sampling as data_prep does it: 16 questions x 10 samples x 32 tokens (T = 1), 8 questions a batch;
- greedy generation as synergy does it: 60 prompts x 100 steps, end-of-sequence suppressed, at batch 12 and 60;
- one LoRA training step (r = 16 on q/k/v/o, AdamW), batch 8 x 93 tokens: float32, and bfloat16 autocast (what
  ``finetune.training.bf16: true`` does on a CPU).
The tolerances that make bfloat16 acceptable are tested in tests/test_precision.py, not here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from peft import LoraConfig, get_peft_model

from metasyn.lm.generation import generate
from metasyn.lm.models import load_model
from metasyn.lm.precision import computing_in

SPEC = "embedded:smollm2-135m-instruct"


def seconds(work: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - start


def training_step(adapted: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, autocast: Callable) -> None:
    with autocast():
        loss = adapted(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def main() -> None:
    lm = load_model(SPEC, device="cpu", dtype="float32")
    questions = [
        f"What is {7 * index} plus {13 * index}? Give the final answer as a number. Reply in the form 'Answer: "
        "<answer>', then on a new line 'Confidence: <probability from 0 to 1 that your answer is correct>'."
        for index in range(60)
    ]
    prompts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in questions
    ]
    for name in ("float32", "bfloat16"):
        model = computing_in(lm, name)
        generate(model, prompts[:2], 4)  # warm-up
        sampled = seconds(generate, model, prompts[:16], 32, do_sample=True, num_return_sequences=10)
        print(f"{name:>9}  sampling 16 questions x 10 x 32 tokens: {sampled:6.1f} s")
        for batch in (12, 60):
            greedy = seconds(generate, model, prompts, 100, batch_size=batch, suppress_eos=True)
            print(f"{name:>9}  greedy 60 prompts x 100 steps, batch {batch}: {greedy:6.1f} s")

    inputs = lm.tokenizer([questions[0] * 2] * 8, return_tensors="pt")
    inputs = {key: value[:, :93] for key, value in inputs.items()}
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    for name, autocast in (("float32", contextlib.nullcontext), ("bfloat16 autocast", _bfloat16_autocast)):
        adapted = get_peft_model(load_model(SPEC, device="cpu", dtype="float32").model, lora)
        optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-4)
        training_step(adapted, optimizer, inputs, autocast)  # warm-up
        per_step = sum(seconds(training_step, adapted, optimizer, inputs, autocast) for _ in range(3)) / 3
        print(f"{name:>17}  LoRA training step, 8 x 93 tokens: {per_step:5.2f} s")


def _bfloat16_autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


if __name__ == "__main__":
    main()
