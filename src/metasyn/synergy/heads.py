"""Per-head attention output: capture its L2 norm, and ablate heads, through hooks on ``o_proj``.

Architecture-agnostic for decoders whose attention output projection is called ``o_proj`` (Llama, Gemma 3,
Qwen, Mistral, ...): the input of ``o_proj`` is the concatenation of the heads' attention outputs,
``(batch, seq, heads * head_dim)``, so reshaping it to ``(heads, head_dim)`` gives every head's output before
the heads are mixed. Head and layer counts come from the model's (text) config.

Generation steps. A model generates ``n_steps`` tokens; step ``t`` (0-based) is the forward pass that emits
generated token ``t``. Its input position is the last prompt token for ``t = 0`` and generated token ``t - 1``
afterwards, so the steps are the last ``n_steps`` positions of ``prompt + completion[:-1]``. One teacher-forced
forward over that sequence reproduces the per-step values of the generation loop (tested to ~1e-5) at a
fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel

from metasyn.lm.generation import generate, left_padded_position_ids
from metasyn.lm.models import LanguageModel


class HeadLayout(NamedTuple):
    """Attention heads of a decoder: ``layers x heads``, each ``head_dim`` wide."""

    layers: int
    heads: int
    head_dim: int


def head_layout(model: PreTrainedModel) -> HeadLayout:
    """Layer count, heads per layer and head width from the model's text config."""
    config = model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return HeadLayout(config.num_hidden_layers, config.num_attention_heads, head_dim)


def o_proj_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The attention output projection of every layer, in layer order; a clear error for other architectures."""
    layout = head_layout(model)
    modules = [module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] == "o_proj"]
    if len(modules) != layout.layers:
        raise ValueError(
            f"Found {len(modules)} attention output projections named 'o_proj' in {type(model).__name__}, but its "
            f"config has {layout.layers} layers. metasyn.synergy.heads supports decoders whose attention output "
            "projection is called o_proj (Llama, Gemma, Qwen, Mistral)."
        )
    width = layout.heads * layout.head_dim
    if getattr(modules[0], "in_features", width) != width:
        raise ValueError(
            f"o_proj takes {modules[0].in_features} features, but the config says {layout.heads} heads x "
            f"{layout.head_dim} dims = {width}; cannot split its input into heads."
        )
    return modules


@contextmanager
def _o_proj_pre_hooks(model: PreTrainedModel, hooks: Mapping[int, Callable]) -> Iterator[None]:
    """Register ``hooks[layer]`` as forward pre-hooks on those layers' ``o_proj`` while the context is open."""
    modules = o_proj_modules(model)
    handles = [modules[layer].register_forward_pre_hook(hook) for layer, hook in hooks.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_head_norms(model: PreTrainedModel, last_positions: int | None = None) -> Iterator[list[list[torch.Tensor]]]:
    """Record the L2 norm of every head's output at each forward pass, while the context is open.

    Yields ``records``: ``records[layer]`` is a list with one ``(batch, positions, heads)`` float32 tensor per
    forward pass, keeping only the ``last_positions`` positions when given.
    """
    layout = head_layout(model)
    records: list[list[torch.Tensor]] = [[] for _ in range(layout.layers)]

    def recorder(layer: int):
        def record(module: nn.Module, args: tuple) -> None:
            per_head = args[0].unflatten(-1, (layout.heads, layout.head_dim))
            if last_positions is not None:
                per_head = per_head[:, -last_positions:]
            records[layer].append(per_head.float().norm(dim=-1).cpu())

        return record

    with _o_proj_pre_hooks(model, {layer: recorder(layer) for layer in range(layout.layers)}):
        yield records


@contextmanager
def ablate_heads(
    model: PreTrainedModel, removed: torch.Tensor, noise: Sequence[torch.Tensor] | None = None
) -> Iterator[None]:
    """Deactivate the heads marked in ``removed`` while the context is open: zero their output, or add ``noise``.

    ``removed`` (bool) is ``(layers, heads)`` for every batch row, or ``(rows, layers, heads)``: one head set per
    row, so one forward evaluates several head sets. ``noise[layer]`` is ``(prompts, positions, heads, head_dim)``
    on the batch's positions; rows are head-set-major (row ``r`` is prompt ``r % prompts``), so every head set of
    a prompt gets the same draw and only the removed heads' slices of the ``o_proj`` input change.
    """
    layout = head_layout(model)
    if tuple(removed.shape[-2:]) != (layout.layers, layout.heads) or removed.ndim not in (2, 3):
        raise ValueError(
            f"Ablation mask has shape {tuple(removed.shape)}; expected {(layout.layers, layout.heads)} or "
            f"(rows, {layout.layers}, {layout.heads})."
        )
    if noise is not None and len(noise) != layout.layers:
        raise ValueError(f"Ablation noise has {len(noise)} layers; the model has {layout.layers}.")
    # (rows or 1, layers, heads) -> per layer (rows or 1, 1 position, heads, 1 dim), broadcast over the batch.
    per_row = (removed if removed.ndim == 3 else removed[None]).to(model.device)

    def deactivate(layer: int):
        mask = per_row[:, layer, None, :, None]

        def hook(module: nn.Module, args: tuple) -> tuple:
            per_head = args[0].unflatten(-1, (layout.heads, layout.head_dim))
            if noise is None:
                return (per_head * ~mask).flatten(-2), *args[1:]
            prompts = noise[layer].shape[0]
            row_mask = mask if len(mask) == 1 else mask.unflatten(0, (-1, prompts))
            noisy = per_head.unflatten(0, (-1, prompts)) + row_mask * noise[layer]
            return noisy.flatten(0, 1).flatten(-2), *args[1:]

        return hook

    layers = [layer for layer in range(layout.layers) if per_row[:, layer].any()]
    with _o_proj_pre_hooks(model, {layer: deactivate(layer) for layer in layers}):
        yield


@contextmanager
def sum_head_outputs(model: PreTrainedModel, last_positions: int) -> Iterator[dict[str, torch.Tensor]]:
    """Accumulate the sum and sum of squares of every head's output over the last positions of every row.

    Yields ``{"count": (), "sum": (layers, heads, head_dim), "sum_of_squares": ...}``, float64, updated at each
    forward pass while the context is open.
    """
    layout = head_layout(model)
    shape = (layout.layers, layout.heads, layout.head_dim)
    totals = {
        "count": torch.zeros((), dtype=torch.float64),
        "sum": torch.zeros(shape, dtype=torch.float64),
        "sum_of_squares": torch.zeros(shape, dtype=torch.float64),
    }

    def accumulator(layer: int):
        def accumulate(module: nn.Module, args: tuple) -> None:
            per_head = args[0][:, -last_positions:].unflatten(-1, (layout.heads, layout.head_dim))
            values = per_head.flatten(0, 1).double()
            if layer == 0:
                totals["count"] += values.shape[0]
            totals["sum"][layer] += values.sum(0).cpu()
            totals["sum_of_squares"][layer] += values.square().sum(0).cpu()

        return accumulate

    with _o_proj_pre_hooks(model, {layer: accumulator(layer) for layer in range(layout.layers)}):
        yield totals


@dataclass
class HeadActivity:
    """One prompt's greedy generation and the per-head output norms at each of its steps."""

    head_output_norms: torch.Tensor  # float32 (layers, heads, steps)
    prompt_token_ids: torch.Tensor  # int64 (prompt length,)
    completion_token_ids: torch.Tensor  # int64 (steps,): generated with end-of-sequence suppressed
    natural_end: int | None  # step at which the model chose end-of-sequence, None if it never did

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """As a flat dict of tensors (``natural_end`` -1 for None), for ``TensorDataset``."""
        natural_end = -1 if self.natural_end is None else self.natural_end
        return {
            "head_output_norms": self.head_output_norms,
            "prompt_token_ids": self.prompt_token_ids,
            "completion_token_ids": self.completion_token_ids,
            "natural_end": torch.tensor(natural_end),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> HeadActivity:
        """Inverse of ``to_tensors``."""
        natural_end = int(tensors["natural_end"])
        return cls(
            tensors["head_output_norms"],
            tensors["prompt_token_ids"],
            tensors["completion_token_ids"],
            None if natural_end < 0 else natural_end,
        )


def teacher_forced_batch(
    prompt_ids: Sequence[torch.Tensor],
    completion_ids: Sequence[torch.Tensor],
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """Left-padded ``prompt + completion[:-1]`` per row, so the generation steps are the last positions."""
    steps = {len(completion) for completion in completion_ids}
    if len(steps) != 1:
        raise ValueError(f"Completions in one batch must have the same length; got lengths {sorted(steps)}.")
    sequences = [torch.cat([prompt, completion[:-1]]) for prompt, completion in zip(prompt_ids, completion_ids)]
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, width - len(sequence) :] = sequence
        attention_mask[row, width - len(sequence) :] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": left_padded_position_ids(attention_mask),
    }


@torch.inference_mode()
def teacher_forced_head_norms(model: PreTrainedModel, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """Per-head output norms at the last ``steps`` positions: float32 ``(batch, layers, heads, steps)``."""
    with record_head_norms(model, last_positions=steps) as records:
        model(
            **{name: tensor.to(model.device) for name, tensor in batch.items()},
            logits_to_keep=1,
        )
    # records[layer] holds one (batch, steps, heads) tensor from the single forward pass.
    return torch.stack([layer_records[0] for layer_records in records], dim=1).transpose(2, 3)


@torch.inference_mode()
def step_log_probs(model: PreTrainedModel, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """Next-token log-probabilities at the last ``steps`` positions: float32 ``(batch, steps, vocab)``."""
    inputs = {name: tensor.to(model.device) for name, tensor in batch.items()}
    return model(**inputs, logits_to_keep=steps).logits.float().log_softmax(-1)


def mean_step_divergence(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """KL(reference || other) of next-token distributions (log-probs), averaged over steps: ``(..., batch)``.

    ``reference`` is ``(batch, steps, vocab)``; ``other`` may carry leading dimensions (one per head set).
    """
    return (reference.exp() * (reference - other)).sum(-1).mean(-1)


def record_head_activity(
    lm: LanguageModel,
    prompts: Sequence[str],
    steps: int,
    batch_size: int,
    generator: LanguageModel | None = None,
) -> list[HeadActivity]:
    """Greedy-generate ``steps`` tokens per rendered prompt (end-of-sequence suppressed) and record head norms.

    ``generator`` (default ``lm``) generates the tokens, e.g. ``lm`` computing in bfloat16
    (``metasyn.lm.precision``); the norms are always ``lm``'s own, teacher-forced on those tokens.
    """
    generations = generate(generator or lm, prompts, steps, do_sample=False, batch_size=batch_size, suppress_eos=True)
    activity = []
    for start in range(0, len(prompts), batch_size):
        rows = slice(start, start + batch_size)
        prompt_ids, completion_ids = (
            generations.prompt_ids[rows],
            generations.completion_ids[rows],
        )
        batch = teacher_forced_batch(prompt_ids, completion_ids, lm.tokenizer.pad_token_id)
        norms = teacher_forced_head_norms(lm.model, batch, steps)
        activity += [
            HeadActivity(norm, prompt, completion, natural_end)
            for norm, prompt, completion, natural_end in zip(
                norms, prompt_ids, completion_ids, generations.natural_end[rows]
            )
        ]
    return activity
