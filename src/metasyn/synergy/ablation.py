"""Cumulative head ablation: heads removed in score order, reverse order and random orders."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
    teacher_forced_batch,
)


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
    intervals = round(1 / step) if 0 < step <= 1 else 0
    if not intervals or not math.isclose(intervals * step, 1.0):
        raise ValueError(f"The ablation fraction step must divide 1 (e.g. 0.05 = every 5%), got {step}.")
    return np.linspace(0.0, 1.0, intervals + 1)


def removal_mask(heads: np.ndarray, layers: int, heads_per_layer: int) -> torch.Tensor:
    """Boolean ``layers x heads`` mask marking the given flat head indices."""
    mask = torch.zeros(layers * heads_per_layer, dtype=torch.bool)
    mask[torch.as_tensor(heads, dtype=torch.long)] = True
    return mask.view(layers, heads_per_layer)


def ablation_curves(
    model: PreTrainedModel,
    activity: Sequence[HeadActivity],
    orders: Mapping[str, Sequence[np.ndarray]],
    fractions: Sequence[float],
    batch_size: int,
    pad_token_id: int,
) -> pd.DataFrame:
    """Behaviour divergence as heads are removed cumulatively in each order (schema in the module docstring).

    The ablated model reads the original greedy tokens (teacher forcing); the divergence of one prompt is the
    mean over its generation steps of KL(original || ablated) next-token distributions.
    """
    if not all(0 <= fraction <= 1 for fraction in fractions):
        raise ValueError(f"Ablation fractions must lie in [0, 1], got {list(fractions)}.")
    layout = head_layout(model)
    scored = len(next(iter(orders.values()))[0])
    removed = {
        (name, repeat, fraction): frozenset(order[: round(fraction * scored)].tolist())
        for name, repeats in orders.items()
        for repeat, order in enumerate(repeats)
        for fraction in fractions
    }
    # Orders share prefixes (none removed, all removed); each distinct head set is evaluated once.
    distinct = sorted(set(removed.values()), key=lambda heads: (len(heads), sorted(heads)))
    divergence_sum = dict.fromkeys(distinct, 0.0)
    batches = range(0, len(activity), batch_size)
    with tqdm(total=len(batches) * len(distinct), desc="Head ablation", unit="forward") as bar:
        for start in batches:
            records = activity[start : start + batch_size]
            steps = len(records[0].completion_token_ids)
            batch = teacher_forced_batch(
                [record.prompt_token_ids for record in records],
                [record.completion_token_ids for record in records],
                pad_token_id,
            )
            reference = step_log_probs(model, batch, steps)
            for heads in distinct:
                with ablate_heads(
                    model,
                    removal_mask(np.fromiter(heads, int), layout.layers, layout.heads),
                ):
                    ablated = step_log_probs(model, batch, steps)
                divergence_sum[heads] += float(mean_step_divergence(reference, ablated).sum())
                bar.update()
    rows = []
    for name, repeats in orders.items():
        for fraction in fractions:
            values = [divergence_sum[removed[name, repeat, fraction]] / len(activity) for repeat in range(len(repeats))]
            rows.append(
                {
                    "order": name,
                    "fraction": float(fraction),
                    "heads_removed": round(fraction * scored),
                    "divergence": float(np.mean(values)),
                    "divergence_sd": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                    "repeats": len(values),
                }
            )
    return pd.DataFrame(rows)
