"""Batched generation (sampling and greedy) shared by data_prep, calibration and synergy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import BatchEncoding, LogitsProcessor, PreTrainedTokenizerBase

from metasyn.lm.models import LanguageModel


@dataclass
class Generations:
    """Generated sequences, prompt-major (all samples of prompt 0, then prompt 1, ...)."""

    prompt_ids: list[torch.Tensor]
    completion_ids: list[torch.Tensor]
    texts: list[str]
    # Step at which the model's own (unprocessed) greedy choice was end-of-sequence; None if it never was.
    # Only meaningful with ``suppress_eos``, where generation goes on past that point.
    natural_end: list[int | None]


def stop_token_ids(lm: LanguageModel) -> list[int]:
    """Every token id that ends a turn for this model (generation config and tokenizer)."""
    configured = lm.model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if lm.tokenizer.eos_token_id is not None:
        ids.add(lm.tokenizer.eos_token_id)
    return sorted(ids)


def encode_left_padded(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], device: torch.device) -> BatchEncoding:
    """Rendered texts as one batch on ``device``, left-padded so that every row ends with its last real token."""
    # The chat template has already written the special tokens into the texts.
    encoded = tokenizer(list(texts), return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    return encoded.to(device)


def left_padded_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count real tokens only, as generate() assigns them to left-padded prompts."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class InverseCdfSampler(LogitsProcessor):
    """Draws each row's next token from softmax(scores / temperature) at one uniform draw on its cumulative
    distribution, and leaves that token the only finite score, so that greedy decoding emits it.

    ``generate``'s own sampling calls ``torch.multinomial``, which on a CPU draws an exponential variate for every
    vocabulary entry: 96 ms a step for 80 rows x 49,152 tokens on this project's 2-core CPU, 30% of data_prep's
    sampling time (torch profiler, SmolLM2-135M in bfloat16). Inverting the distribution needs one uniform per row.
    The cumulative sum is taken in float64, so that a token keeps its probability down to about 1e-16 of the mass.
    """

    def __init__(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(
                f"Sampling temperature must be positive, got {temperature}; for greedy decoding leave do_sample off."
            )
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        uniform = torch.rand(scores.shape[0], 1, dtype=torch.float64, device=scores.device)
        return self.draw(scores, uniform)

    def draw(self, scores: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """The scores with only the token at each row's ``uniform`` draw (rows x 1, in [0, 1)) left finite."""
        cumulative = (scores.double() / self.temperature).softmax(-1).cumsum(-1)
        # The first token whose cumulative mass exceeds the draw; a zero-probability token never does.
        drawn = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True)
        drawn = drawn.clamp(max=scores.shape[-1] - 1)
        only_drawn = torch.full_like(scores, -torch.inf)
        return only_drawn.scatter_(-1, drawn, 0.0)


# A batch drops its finished rows once this share of the rows still decoding has finished: each step's cost grows
# with the rows decoded (SmolLM2-135M in bfloat16 on this 2-core CPU, 120-token prompts: 38 ms a step for 10 rows,
# 193 for 80; benchmarks/generation_benchmark.py), and dropping rows copies the key/value cache once, about what
# one step's cache append costs.
COMPACT_SHARE = 0.25


def decode(
    model: torch.nn.Module,
    encoded: BatchEncoding,
    copies: int,
    max_new_tokens: int,
    stops: torch.Tensor,
    sampler: InverseCdfSampler | None,
    suppress_eos: bool,
    settled: Callable[[torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, list[int | None]]:
    """Each row's ``max_new_tokens`` new tokens (``copies`` rows per prompt, prompt-major; a finished row's tokens
    end at its stop token, or at the step where ``settled`` first holds for its tokens, and are -1 after), and the
    step of its unprocessed greedy stop token (``suppress_eos``).

    Greedy decoding as ``model.generate`` does it, but a finished row leaves the batch, so that the rows still
    generating do not pay for it. Every row draws the same uniform at a step as it would in a full batch, so its
    samples do not depend on when the other rows end.
    """
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    cache = None
    if ids.shape[1] > 1:
        # The prompts' cache once, repeated for their copies: generate's own expansion would run each prompt through
        # the model once per sample (8 prompts x 10 samples x 32 tokens, SmolLM2-135M in bfloat16: 14 s against 9 s).
        # The last prompt token is left out of it, so that decoding starts with a forward that yields logits.
        prefix = model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=left_padded_position_ids(mask[:, :-1]),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = prefix.cache
        cache.batch_repeat_interleave(copies)
    mask = mask.repeat_interleave(copies, dim=0)
    step_input = ids[:, -1:].repeat_interleave(copies, dim=0)
    positions = mask.sum(-1, keepdim=True) - 1
    rows = mask.shape[0]
    tokens = torch.full((rows, max_new_tokens), -1, dtype=torch.long)
    natural_end: list[int | None] = [None] * rows
    decoding = torch.arange(rows)  # the batch's rows, by their index in ``tokens``
    finished = torch.zeros(rows, dtype=torch.bool)  # per batch row: stopped or settled, not yet dropped
    stops = stops.to(mask.device)
    for step in range(max_new_tokens):
        output = model(input_ids=step_input, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        cache = output.cache
        scores = output.logits[:, -1, :].float()
        if suppress_eos:
            for row in torch.isin(scores.argmax(-1), stops).nonzero().flatten().tolist():
                if natural_end[decoding[row]] is None:
                    natural_end[decoding[row]] = step
            scores[:, stops] = -torch.inf
        if sampler is not None:
            uniform = torch.rand(rows, 1, dtype=torch.float64, device=scores.device)
            scores = sampler.draw(scores, uniform[decoding.to(scores.device)])
        chosen = scores.argmax(-1)
        live = ~finished
        tokens[decoding[live], step] = chosen[live].cpu()
        stopped = torch.isin(chosen, stops).cpu()
        if settled is not None:
            # A settled row keeps the token that settled it (a stop token is not part of a completion).
            for row in (live & ~stopped).nonzero().flatten().tolist():
                finished[row] = settled(tokens[decoding[row], : step + 1])
        finished |= stopped
        if finished.all():
            break
        if finished.sum() >= COMPACT_SHARE * len(finished):
            kept = (~finished).nonzero().flatten()
            cache.batch_select_indices(kept.to(mask.device))
            decoding, finished, chosen = decoding[kept], finished[kept], chosen[kept.to(chosen.device)]
            mask, positions = mask[kept.to(mask.device)], positions[kept.to(mask.device)]
        step_input = chosen[:, None]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        positions = positions + 1
    return tokens, natural_end


@torch.inference_mode()
def generate(
    lm: LanguageModel,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    seed: int = 0,
    suppress_eos: bool = False,
    settled: Callable[[str], bool] | None = None,
    progress: str | None = None,
) -> Generations:
    """Generate for rendered prompts in batches; seeded per batch so results do not depend on run order.

    Sampling draws with ``InverseCdfSampler`` at ``temperature``, with no top-k or top-p cut. With ``suppress_eos``
    every row generates ``max_new_tokens``, and ``natural_end`` records where it would have stopped. A row whose
    text so far satisfies ``settled`` (what it is read for can no longer change) stops there.
    """
    model, tokenizer = lm
    stops = torch.tensor(stop_token_ids(lm))
    sampler = InverseCdfSampler(temperature) if do_sample else None
    settled_tokens = None if settled is None else lambda ids: settled(tokenizer.decode(ids, skip_special_tokens=True))
    result = Generations([], [], [], [])
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc=progress, disable=progress is None):
        encoded = encode_left_padded(tokenizer, list(prompts[start : start + batch_size]), model.device)
        torch.manual_seed(seed + start)
        tokens, natural_end = decode(
            model, encoded, num_return_sequences, max_new_tokens, stops, sampler, suppress_eos, settled_tokens
        )
        for row in range(tokens.shape[0]):
            source = row // num_return_sequences
            mask = encoded["attention_mask"][source].bool().cpu()
            result.prompt_ids.append(encoded["input_ids"][source].cpu()[mask])
            completion = tokens[row]
            # A stop token ends the completion (and is not part of it); -1 fills the steps after it.
            stopped = (torch.isin(completion, stops) | (completion < 0)).nonzero()
            completion = completion[: int(stopped[0])] if len(stopped) else completion
            result.completion_ids.append(completion)
            result.texts.append(tokenizer.decode(completion, skip_special_tokens=True))
        result.natural_end.extend(natural_end)
    return result
