"""Generation on the embedded model as data_prep and calibration take it, with and without dropping finished rows.

    .venv/bin/python benchmarks/generation_benchmark.py [--questions 16]

A decoding step's cost grows with the rows it decodes; ``metasyn.lm.generation.decode`` drops a batch's finished
rows once ``COMPACT_SHARE`` of them have stopped. This prints, in the inference dtype (bfloat16 on a CPU with
AVX-512 BF16):

- the seconds of one decoding step for 10 to 160 rows (120-token prompts, 16 steps each);
- data_prep's sampling (``--questions`` per domain x 10 samples x 32 tokens, 8 questions per batch, T = 0.4) and
  calibration's greedy answers (one batch of all questions), with rows dropped and with every row decoded to
  the longest one's end (``COMPACT_SHARE`` infinite), and how many texts agree. Sampled texts must all agree;
  greedy ones in bfloat16 may differ in a few near-ties, as they do between batch sizes.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from metasyn.lm import generation
from metasyn.lm.models import load_model
from metasyn.lm.precision import computing_in
from metasyn.lm.prompts import confidence_messages, render_prompts
from metasyn.questions.generated import arithmetic_questions, factual_questions, multiple_choice_questions

SPEC = "embedded:smollm2-135m-instruct"


@torch.inference_mode()
def step_seconds(model: torch.nn.Module, rows: int, prompt_tokens: int = 120, steps: int = 16) -> float:
    """Seconds of one single-token forward with a ``prompt_tokens`` cache, for ``rows`` rows."""
    ids = torch.randint(100, 40_000, (rows, prompt_tokens))
    output = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache, next_ids = output.cache, output.logits[:, -1:].argmax(-1)
    start = time.perf_counter()
    for _ in range(steps):
        output = model(input_ids=next_ids, cache=cache, use_cache=True)
        cache, next_ids = output.cache, output.logits[:, -1:].argmax(-1)
    return (time.perf_counter() - start) / steps


def timed_texts(lm, prompts: list[str], compact_share: float, **options) -> tuple[float, list[str]]:
    """Seconds and texts of ``generation.generate`` with finished rows dropped at ``compact_share``."""
    generation.COMPACT_SHARE = compact_share
    start = time.perf_counter()
    texts = generation.generate(lm, prompts, 32, seed=5, **options).texts
    return time.perf_counter() - start, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16, help="questions per domain")
    args = parser.parse_args()
    lm = computing_in(load_model(SPEC), "auto")
    print(f"{SPEC} in {lm.model.dtype}, {torch.get_num_threads()} threads")
    for rows in (10, 20, 40, 80, 160):
        seconds = step_seconds(lm.model, rows)
        print(f"decoding step, {rows:3d} rows: {seconds * 1000:6.1f} ms ({seconds / rows * 1000:.2f} ms a row)")
    questions = pd.concat([
        arithmetic_questions(args.questions, 0), multiple_choice_questions(args.questions, 0),
        factual_questions(None).head(args.questions),
    ])  # fmt: skip
    prompts = render_prompts(lm.tokenizer, [confidence_messages(row) for row in questions.to_dict("records")])
    cases = {
        "sampling": {"do_sample": True, "temperature": 0.4, "num_return_sequences": 10, "batch_size": 8},
        "greedy": {"batch_size": len(prompts)},
    }
    default = generation.COMPACT_SHARE
    for name, options in cases.items():
        dropped, dropped_texts = timed_texts(lm, prompts, default, **options)
        kept, kept_texts = timed_texts(lm, prompts, float("inf"), **options)
        same = sum(a == b for a, b in zip(dropped_texts, kept_texts, strict=True))
        print(
            f"{name}: {dropped:.1f} s with finished rows dropped, {kept:.1f} s with every row decoded; "
            f"{same} of {len(kept_texts)} texts the same"
        )
    generation.COMPACT_SHARE = default


if __name__ == "__main__":
    main()
