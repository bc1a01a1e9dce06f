"""Cumulative head ablation: heads removed in score order, reverse order and random orders.

A removed head is deactivated in one of two ways (``ABLATION_METHODS``):

- ``zero``: its slice of the ``o_proj`` input is set to zero (metasyn's first method);
- ``noise``: Gaussian noise is added to that slice, ``scale`` times the head's own spread (the paper's method).

The spread is an SD per head *and dimension*: each of a head's ``head_dim`` output coordinates gets noise as
wide as that coordinate varies. A single SD per head would spread the same noise energy evenly over every
coordinate, so coordinates the head barely uses would get as much as those that carry its signal; ``o_proj``
weights such coordinates arbitrarily, and the perturbation would then measure those weights rather than the
loss of the head. It is estimated once, from the base model's activity on the synergy prompts (its recorded
generation steps, teacher-forced), and used for every model: a fine-tune then gets the same perturbation as its
base, so a difference between their ablation curves is the models' sensitivity, not a difference in noise.

Noise draws are seeded by ``(seed, prompt id)`` and shared by every head set of a prompt (common random
numbers): a difference between orders, or between fractions, is not a difference between draws, and batching
does not change the result.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from metasyn.synergy.heads import (
    HeadActivity,
    ablate_heads,
    head_layout,
    mean_step_divergence,
    step_log_probs,
    sum_head_outputs,
    teacher_forced_batch,
)

ABLATION_METHODS = ("zero", "noise")
DIVERGENCE_COLUMNS = ["order", "repeat", "fraction", "heads_removed", "prompt_id", "divergence"]


def check_ablation_settings(settings: Mapping) -> None:
    """Refuse ``synergy.ablation`` settings that cannot run, with the key and what it accepts."""

    def refuse(key: str, wanted: str) -> None:
        raise ValueError(f"synergy.ablation.{key} must be {wanted}; got {settings.get(key)!r}.")

    def is_integer(value: object) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if settings.get("method") not in ABLATION_METHODS:
        refuse("method", f"one of {ABLATION_METHODS} (zero: zero the heads; noise: the paper's Gaussian noise)")
    scale = settings.get("noise_scale")
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not 0 <= scale < math.inf:
        refuse("noise_scale", "a number >= 0 (multiple of each head's SD)")
    for key, low in (("seed", 0), ("batch_size", 1), ("random_orders", 1)):
        if not is_integer(settings.get(key)) or settings[key] < low:
            refuse(key, f"an integer >= {low}")
    ablation_fractions(settings.get("fraction_step"))


@dataclass(frozen=True)
class NoiseAblation:
    """Gaussian noise added to a removed head's output: ``scale`` times its per-dimension SD, seeded per prompt."""

    sd: torch.Tensor  # float32 (layers, heads, head_dim)
    scale: float
    seed: int

    def for_batch(
        self, prompt_ids: Sequence[str], attention_mask: torch.Tensor, dtype: torch.dtype, device: torch.device
    ) -> list[torch.Tensor]:
        """Per layer ``(prompts, positions, heads, head_dim)`` noise on a left-padded batch's real positions.

        Each prompt's draw comes from its own generator seeded by ``(seed, CRC-32 of its id)``, so it depends on
        neither the batch nor the other prompts.
        """
        layers, heads, head_dim = self.sd.shape
        noise = torch.zeros((layers, *attention_mask.shape, heads, head_dim))
        for row, (prompt_id, mask) in enumerate(zip(prompt_ids, attention_mask)):
            # numpy's SeedSequence mixes both numbers into the whole state (torch's CPU generator keeps 32 bits).
            generator = np.random.default_rng([self.seed, zlib.crc32(prompt_id.encode())])
            length = int(mask.sum())
            draw = torch.from_numpy(generator.standard_normal((layers, length, heads, head_dim), dtype=np.float32))
            noise[:, row, mask.shape[0] - length :] = draw * (self.scale * self.sd[:, None])
        return list(noise.to(device=device, dtype=dtype).unbind())


def ablation_noise(settings: Mapping, head_output_spread: Mapping[str, torch.Tensor]) -> NoiseAblation | None:
    """The deactivation that ``synergy.ablation`` asks for: None to zero heads, or the noise (settings checked)."""
    check_ablation_settings(settings)
    if settings["method"] == "zero":
        return None
    return NoiseAblation(head_output_spread["sd"], float(settings["noise_scale"]), settings["seed"])


@torch.inference_mode()
def head_output_spread(
    model: PreTrainedModel, activity: Sequence[HeadActivity], batch_size: int, pad_token_id: int
) -> dict[str, torch.Tensor]:
    """SD (ddof=1) of every head's ``o_proj`` input per dimension over all prompts' generation steps.

    The recorded tokens are teacher-forced, so the positions are those of ``head_output_norms``. Returns
    ``{"sd": float32 (layers, heads, head_dim), "positions": int64 ()}``.
    """
    steps = len(activity[0].completion_token_ids)
    with sum_head_outputs(model, last_positions=steps) as totals:
        for start in range(0, len(activity), batch_size):
            records = activity[start : start + batch_size]
            batch = teacher_forced_batch(
                [record.prompt_token_ids for record in records],
                [record.completion_token_ids for record in records],
                pad_token_id,
            )
            model(**{name: tensor.to(model.device) for name, tensor in batch.items()}, logits_to_keep=1)
    count = totals["count"]
    if count < 2:
        raise ValueError(f"A head's output SD needs at least 2 positions; the activity has {int(count)}.")
    variance = (totals["sum_of_squares"] - totals["sum"].square() / count) / (count - 1)
    return {"sd": variance.clamp(min=0).sqrt().float(), "positions": count.long()}


def ablation_orders(scores: pd.DataFrame, random_orders: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Scored heads in decreasing and increasing syn-red score, and ``random_orders`` seeded permutations."""
    scored = scores.dropna(subset=["syn_red_score"])
    # Ties broken by head index, so the orders are reproducible.
    ascending = scored.sort_values(["syn_red_score", "head_index"], kind="stable")["head_index"].to_numpy()
    descending = scored.sort_values(["syn_red_score", "head_index"], ascending=[False, True], kind="stable")
    rng = np.random.default_rng(seed)
    return {
        "synergistic_first": [descending["head_index"].to_numpy()],
        "redundant_first": [ascending],
        "random": [rng.permutation(ascending) for _ in range(random_orders)],
    }


def ablation_fractions(step: float) -> np.ndarray:
    """Fractions of heads removed: 0, step, 2 step, ..., 1."""
    valid = isinstance(step, numbers.Real) and not isinstance(step, bool) and 0 < step <= 1
    intervals = round(1 / step) if valid else 0
    if not intervals or not math.isclose(intervals * step, 1.0):
        raise ValueError(f"The ablation fraction step must divide 1 (e.g. 0.05 = every 5%), got {step}.")
    return np.linspace(0.0, 1.0, intervals + 1)


def removal_mask(heads: np.ndarray, layers: int, heads_per_layer: int) -> torch.Tensor:
    """Boolean ``layers x heads`` mask marking the given flat head indices."""
    mask = torch.zeros(layers * heads_per_layer, dtype=torch.bool)
    mask[torch.tensor(heads, dtype=torch.long)] = True
    return mask.view(layers, heads_per_layer)


def ablation_divergences(
    model: PreTrainedModel,
    activity: Sequence[HeadActivity],
    prompt_ids: Sequence[str],
    orders: Mapping[str, Sequence[np.ndarray]],
    fractions: Sequence[float],
    batch_size: int,
    pad_token_id: int,
    noise: NoiseAblation | None = None,
) -> pd.DataFrame:
    """Per prompt, the behaviour divergence as heads are removed cumulatively in each order (package docstring).

    The ablated model reads the original greedy tokens (teacher forcing); a prompt's divergence is the mean over
    its generation steps of KL(original || ablated) next-token distributions. Heads are zeroed, or get ``noise``.

    ``batch_size`` is the number of rows per forward, prompts x head sets: ``min(batch_size, prompts)`` prompts
    each evaluated under ``batch_size // that`` distinct head sets at once (at least one).
    """
    if not all(0 <= fraction <= 1 for fraction in fractions):
        raise ValueError(f"Ablation fractions must lie in [0, 1], got {list(fractions)}.")
    if len(prompt_ids) != len(activity):
        raise ValueError(f"Got {len(prompt_ids)} prompt ids for {len(activity)} prompts' activity.")
    prompt_ids = list(prompt_ids)
    layout = head_layout(model)
    scored = len(next(iter(orders.values()))[0])
    removed = {
        (name, repeat, fraction): frozenset(order[: round(fraction * scored)].tolist())
        for name, repeats in orders.items()
        for repeat, order in enumerate(repeats)
        for fraction in fractions
    }
    # Orders share prefixes (all removed, and none: the unablated model, divergence 0 without a forward); each
    # distinct head set is evaluated once.
    nothing = frozenset()
    distinct = sorted(set(removed.values()) - {nothing}, key=lambda heads: (len(heads), sorted(heads)))
    divergence = {heads: np.zeros(len(activity)) for heads in [nothing, *distinct]}
    prompts_per_forward = min(batch_size, len(activity))
    sets_per_forward = max(1, batch_size // prompts_per_forward)
    prompt_batches = range(0, len(activity), prompts_per_forward)
    set_batches = range(0, len(distinct), sets_per_forward)
    with tqdm(total=len(prompt_batches) * len(set_batches), desc="Head ablation", unit="forward") as bar:
        for start in prompt_batches:
            rows = slice(start, start + prompts_per_forward)
            records = activity[rows]
            steps = len(records[0].completion_token_ids)
            batch = teacher_forced_batch(
                [record.prompt_token_ids for record in records],
                [record.completion_token_ids for record in records],
                pad_token_id,
            )
            reference = step_log_probs(model, batch, steps)
            batch_noise = (
                None
                if noise is None
                else noise.for_batch(prompt_ids[rows], batch["attention_mask"], model.dtype, model.device)
            )
            for first in set_batches:
                head_sets = distinct[first : first + sets_per_forward]
                masks = torch.stack([
                    removal_mask(np.fromiter(heads, int), layout.layers, layout.heads) for heads in head_sets
                ])  # fmt: skip
                # Rows are head-set-major: each head set's block holds every prompt of the batch.
                replicated = {name: tensor.repeat(len(head_sets), 1) for name, tensor in batch.items()}
                with ablate_heads(model, masks.repeat_interleave(len(records), 0), batch_noise):
                    ablated = step_log_probs(model, replicated, steps).unflatten(0, (len(head_sets), len(records)))
                for heads, values in zip(head_sets, mean_step_divergence(reference, ablated).cpu().numpy()):
                    divergence[heads][rows] = values
                bar.update()
    blocks = [
        pd.DataFrame({
            "order": name,
            "repeat": repeat,
            "fraction": float(fraction),
            "heads_removed": round(fraction * scored),
            "prompt_id": list(prompt_ids),
            "divergence": divergence[removed[name, repeat, fraction]],
        })
        for name, repeats in orders.items()
        for repeat in range(len(repeats))
        for fraction in fractions
    ]  # fmt: skip
    return pd.concat(blocks, ignore_index=True)[DIVERGENCE_COLUMNS]


def ablation_curves(divergences: pd.DataFrame) -> pd.DataFrame:
    """Per order and fraction: the mean over repeats of the prompt-mean divergence, its SD and the repeats."""
    per_repeat = divergences.groupby(["order", "fraction", "repeat"], sort=False).agg(
        heads_removed=("heads_removed", "first"), divergence=("divergence", "mean")
    )
    curves = per_repeat.groupby(level=["order", "fraction"], sort=False).agg(
        heads_removed=("heads_removed", "first"),
        divergence=("divergence", "mean"),
        divergence_sd=("divergence", lambda values: values.std(ddof=1) if len(values) > 1 else math.nan),
        repeats=("divergence", "size"),
    )
    return curves.reset_index().astype({"heads_removed": np.int64, "repeats": np.int64})
