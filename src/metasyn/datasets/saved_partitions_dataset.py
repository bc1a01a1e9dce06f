"""The partitions a resumable node has saved so far, read back so that it computes only the rest."""

from __future__ import annotations

import logging
from typing import Any

from kedro.io import DatasetError
from kedro_datasets.partitions import PartitionedDataset

logger = logging.getLogger(__name__)


class SavedPartitionsDataset(PartitionedDataset):
    """A ``PartitionedDataset`` read as ``{partition_id: data}`` of the readable partitions, loaded.

    A missing or empty folder loads as ``{}`` (nothing saved yet), where ``PartitionedDataset`` raises. A
    partition that cannot be read (a file cut short by a kill or a full disk) is left out with a warning naming
    the file, so the node computes and saves it again instead of the run stopping on it.
    """

    def load(self) -> dict[str, Any]:
        if not self.exists():
            return {}
        saved = {}
        for partition_id, load_partition in super().load().items():
            try:
                saved[partition_id] = load_partition()
            except DatasetError as error:
                logger.warning(
                    "Saved partition %s is unreadable, so it is computed again: %s",
                    self._partition_to_path(partition_id),
                    error.__cause__ or error,
                )
        return saved
