"""A LoRA adapter directory in PEFT's format, and the directory where an adapter's training keeps checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from peft import PeftConfig
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file, save_file

from metasyn.atomic import atomic_directory
from metasyn.metacognition.finetuning import Adapter


class AdapterDataset(AbstractDataset[Adapter, Adapter]):
    """Saves and loads an ``Adapter`` as ``adapter_config.json`` + ``adapter_model.safetensors``.

    These are the files ``PeftModel.save_pretrained`` writes, so ``PeftModel.from_pretrained(base, path)``
    reads the directory too; loading needs no base model. A save replaces the whole directory atomically, so a
    kill mid-save cannot leave a new config beside old or half-written weights.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Adapter:
        return Adapter(
            PeftConfig.from_pretrained(str(self._path)), load_file(str(self._path / SAFETENSORS_WEIGHTS_NAME))
        )

    def save(self, data: Adapter) -> None:
        with atomic_directory(self._path) as scratch:
            data.config.save_pretrained(str(scratch))
            save_file(
                {name: tensor.detach().cpu().contiguous() for name, tensor in data.weights.items()},
                str(scratch / SAFETENSORS_WEIGHTS_NAME),
                metadata={"format": "pt"},
            )

    def _exists(self) -> bool:
        return (self._path / CONFIG_NAME).is_file() and (self._path / SAFETENSORS_WEIGHTS_NAME).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class AdapterCheckpointsDataset(AbstractDataset[Path, None]):
    """The directory where an adapter's training run keeps Trainer checkpoints; loads as its path.

    Read-only in the catalog: the Trainer writes checkpoints there while it trains, and an interrupted run
    resumes from the last one. The path comes from the catalog (not a parameter) so that Kedro resolves it
    against the project directory like every other dataset path.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        return self._path

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is written by the Trainer during fine-tuning, not saved through the catalog.")

    def _exists(self) -> bool:
        # An absent directory is a run that has not started yet: a valid input.
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
