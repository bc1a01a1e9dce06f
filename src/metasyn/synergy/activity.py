"""The synergy prompt set and per-head activity: which prompts to record, recording them lazily, reading them back."""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from metasyn.lm.models import LanguageModel
from metasyn.lm.precision import computing_in
from metasyn.lm.resume import batched, lazy_batches
from metasyn.synergy.heads import (
    HeadActivity,
    record_head_activity,
)

PROMPT_COLUMNS = ["id", "category", "prompt"]


# Prompt ids name the per-prompt activity files.
PROMPT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def select_prompts(prompts: pd.DataFrame, per_category: int | None) -> pd.DataFrame:
    """Check a prompt table and keep the first ``per_category`` prompts of each category (all when None)."""
    missing = [column for column in PROMPT_COLUMNS if column not in prompts.columns]
    if missing:
        raise ValueError(f"The synergy prompt table lacks columns {missing}; it needs {PROMPT_COLUMNS}.")
    if prompts.empty:
        raise ValueError("The synergy prompt table is empty.")
    bad_ids = [value for value in prompts["id"].astype(str) if not PROMPT_ID_PATTERN.fullmatch(value)]
    if bad_ids:
        raise ValueError(f"Prompt ids become file names: use letters, digits, '_', '.', '-' only. Bad: {bad_ids[:5]}.")
    repeated = prompts["id"][prompts["id"].duplicated()].unique()
    if len(repeated):
        raise ValueError(f"Prompt ids must be unique; repeated: {list(repeated[:5])}.")
    if per_category is not None and per_category < 1:
        raise ValueError(f"prompts_per_category must be at least 1 (or null for all), got {per_category}.")
    table = prompts[PROMPT_COLUMNS].astype(str)
    if per_category is not None:
        table = table.groupby("category", sort=False).head(per_category)
    return table.reset_index(drop=True)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, rendered: Sequence[str]) -> list[torch.Tensor]:
    """Token ids of rendered prompts, exactly as generation encodes them."""
    return [torch.tensor(ids) for ids in tokenizer(list(rendered), add_special_tokens=False)["input_ids"]]


def prompts_to_record(
    prompt_ids: Sequence[str],
    token_ids: Sequence[torch.Tensor],
    saved: Mapping[str, Mapping[str, torch.Tensor]],
    steps: int,
) -> list[str]:
    """Prompts without a saved activity of the same prompt tokens and step count (those are reused)."""
    todo = []
    for prompt_id, tokens in zip(prompt_ids, token_ids):
        previous = saved.get(prompt_id)
        reusable = (
            previous is not None
            and len(previous["completion_token_ids"]) == steps
            and torch.equal(previous["prompt_token_ids"], tokens)
        )
        if not reusable:
            todo.append(prompt_id)
    return todo


def lazy_head_activity(
    lm: LanguageModel, rendered: Mapping[str, str], steps: int, batch_size: int, generation_dtype: str = "auto"
) -> dict[str, Callable[[], dict[str, torch.Tensor]]]:
    """One callable per prompt id giving its activity tensors, computed a batch of sorted prompt ids at a time.

    Sorted, because a ``PartitionedDataset`` saves lazy partitions in that order (``metasyn.lm.resume``). The
    tokens are generated in ``generation_dtype`` (``metasyn.lm.precision``), the norms recorded in ``lm``'s own.
    """
    batches = batched(sorted(rendered), batch_size)
    # Made at the first batch to record, so that a run whose activity is all saved copies no model.
    generator = cache(lambda: computing_in(lm, generation_dtype))

    def record(batch: int) -> dict[str, dict[str, torch.Tensor]]:
        ids = batches[batch]
        prompts = [rendered[prompt_id] for prompt_id in ids]
        activity = record_head_activity(lm, prompts, steps, batch_size, generator())
        return {prompt_id: record.to_tensors() for prompt_id, record in zip(ids, activity)}

    return lazy_batches(batches, record, f"Head activity ({steps} steps)")


def load_activity(
    partitions: Mapping[str, Callable[[], dict[str, torch.Tensor]]],
    prompt_ids: Sequence[str],
) -> list[HeadActivity]:
    """The selected prompts' activity from per-prompt partitions, checked for one shape."""
    missing = [prompt_id for prompt_id in prompt_ids if prompt_id not in partitions]
    if missing:
        raise ValueError(
            f"No head activity saved for prompts {missing[:5]}: its extraction did not run or was interrupted. Run "
            "the extract_head_activity node again (without --only-missing-outputs); it records only missing prompts."
        )
    activity = [HeadActivity.from_tensors(partitions[prompt_id]()) for prompt_id in prompt_ids]
    shapes = {tuple(record.head_output_norms.shape) for record in activity}
    if len(shapes) != 1:
        raise ValueError(
            f"Saved head activity has mixed shapes {sorted(shapes)} (layers, heads, steps): it comes from different "
            "models or step counts. Delete the model's head_activity folder and run again."
        )
    return activity


def check_truncation_settings(settings: Mapping, tau: int) -> None:
    """Refuse ``synergy.truncation`` settings that cannot run, with the key and what it accepts."""

    def is_integer(value: object) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    # PhiID's Gaussian over (past, future) of a pair has 4 variables: its covariance from the steps - tau samples
    # is singular below 5 samples.
    shortest = tau + 5
    min_steps, steps = settings.get("min_steps"), settings.get("steps")
    if not is_integer(min_steps) or min_steps < shortest:
        raise ValueError(
            f"synergy.truncation.min_steps must be an integer >= tau + 5 = {shortest} (PhiID needs 5 samples of "
            f"past and future); got {min_steps!r}."
        )
    if steps is not None and not (is_integer(steps) and steps >= min_steps):
        raise ValueError(
            f"synergy.truncation.steps must be null (every recorded step) or an integer >= min_steps "
            f"({min_steps}); got {steps!r}."
        )


def natural_ends(
    prompt_set: pd.DataFrame, activity: Sequence[HeadActivity], max_steps: int | None, min_steps: int
) -> pd.DataFrame:
    """Per prompt: its natural end, the steps before it (at most ``max_steps``) and whether they are analysed.

    Schema in the package docstring; a prompt is analysed when at least ``min_steps`` steps remain.
    """
    recorded = np.array([record.head_output_norms.shape[-1] for record in activity])
    ends = pd.array([record.natural_end for record in activity], dtype="Int64")
    steps_used = np.minimum(ends.fillna(np.iinfo(np.int64).max).to_numpy(np.int64), recorded)
    if max_steps is not None:
        steps_used = np.minimum(steps_used, max_steps)
    return pd.DataFrame({
        "prompt_id": prompt_set["id"].to_numpy(dtype=str).astype(object),
        "category": prompt_set["category"].to_numpy(dtype=str).astype(object),
        "natural_end": ends,
        "steps_used": steps_used,
        "analysed": steps_used >= min_steps,
    })  # fmt: skip
