"""Resumable batched work, saved as Kedro partitions while it runs (synergy's head activity, data_prep's samples).

A node returns one callable per partition it has still to compute, and a ``PartitionedDataset`` output calls them
in sorted partition-id order, saving each result before it calls the next. So each batch reaches disk as soon as
it finishes, and an interrupted run loses only the batch in progress; the node's next run is given the saved
partitions (an ``IncrementalDataset`` over the same folder) and returns callables for the rest only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def fingerprint(value: object) -> str:
    """SHA-256 of ``value`` as sorted JSON: what saved work was made from, to tell whether a resume may reuse it."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def batched(items: Sequence[Item], size: int) -> list[list[Item]]:
    """``items`` in consecutive batches of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"A batch size must be at least 1, got {size}.")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def lazy_batches(
    batches: Sequence[Sequence[str]], compute: Callable[[int], Mapping[str, Result]], label: str
) -> dict[str, Callable[[], Result]]:
    """One callable per partition id of ``batches``; the first call into a batch runs ``compute(batch index)``.

    Give batches whose ids sort in batch order, as a ``PartitionedDataset`` saves them: then each batch is computed
    once and only the batch being saved is held in memory (a call out of order recomputes a batch, same result).
    """

    @lru_cache(maxsize=1)
    def run(index: int) -> Mapping[str, Result]:
        logger.info("%s: batch %d of %d", label, index + 1, len(batches))
        return compute(index)

    def loader(index: int, partition: str) -> Callable[[], Result]:
        return lambda: run(index)[partition]

    return {partition: loader(index, partition) for index, ids in enumerate(batches) for partition in ids}
