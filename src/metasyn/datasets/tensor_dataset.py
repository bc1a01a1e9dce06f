"""A dict of named torch tensors stored as one safetensors file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractDataset
from kedro.io.core import get_filepath_str, get_protocol_and_path
from safetensors.torch import load_file, save_file

from metasyn.atomic import atomic_file


class TensorDataset(AbstractDataset[dict[str, torch.Tensor], dict[str, torch.Tensor]]):
    """Saves and loads ``{name: tensor}`` as safetensors (fast, memory-mapped, no pickle).

    A save replaces the file atomically: a run killed mid-write leaves the previous file (or none), not a
    truncated one.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath)
        if protocol != "file":
            raise ValueError(f"TensorDataset supports local files only, got {filepath!r}.")
        self._filepath = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> dict[str, torch.Tensor]:
        return load_file(get_filepath_str(self._filepath, "file"))

    def save(self, data: dict[str, torch.Tensor]) -> None:
        if not isinstance(data, dict) or not all(isinstance(value, torch.Tensor) for value in data.values()):
            raise TypeError("TensorDataset saves a dict of torch tensors, e.g. {'head_output_norms': tensor}.")
        with atomic_file(get_filepath_str(self._filepath, "file")) as scratch:
            # safetensors refuses non-contiguous or shared-storage tensors.
            save_file({name: tensor.detach().cpu().contiguous() for name, tensor in data.items()}, str(scratch))

    def _exists(self) -> bool:
        return Path(get_filepath_str(self._filepath, "file")).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
