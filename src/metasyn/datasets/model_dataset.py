"""A language model (model + tokenizer), loaded from a registry spec or saved to a directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from metasyn.atomic import atomic_directory
from metasyn.lm.models import LanguageModel, check_model_available, load_model


class ModelDataset(AbstractDataset[LanguageModel, LanguageModel]):
    """Loads ``LanguageModel(model, tokenizer)`` through ``metasyn.lm.models``; saves with ``save_pretrained``.

    Give either ``spec`` (any spec the registry resolves: ``embedded:<name>``, a hub id; read-only) or
    ``path`` (a model directory, written by ``save`` and read back by ``load``). A save replaces the whole
    directory atomically: a kill mid-save leaves the previous model (or none), not a config without its weights.
    """

    def __init__(
        self,
        spec: str | None = None,
        path: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        random_init: bool = False,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if (spec is None) == (path is None):
            raise ValueError("ModelDataset needs exactly one of 'spec' (a registry spec) or 'path' (a directory).")
        self._spec = spec
        self._path = Path(path) if path is not None else None
        self._load_args = {"device": device, "dtype": dtype, "random_init": random_init, "seed": seed}
        self.metadata = metadata

    def load(self) -> LanguageModel:
        return load_model(self._spec if self._spec is not None else str(self._path), **self._load_args)

    def check_available(self) -> None:
        """Fail now, with the registry's "model not found" message, if a spec'd model cannot be loaded."""
        if self._spec is not None:
            check_model_available(self._spec)

    def save(self, data: LanguageModel) -> None:
        if self._path is None:
            raise DatasetError(f"Model {self._spec!r} is read-only (a registry spec); give a 'path' to save.")
        with atomic_directory(self._path) as scratch:
            data.model.save_pretrained(scratch)
            data.tokenizer.save_pretrained(scratch)

    def _exists(self) -> bool:
        return self._path is None or (self._path / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"spec": self._spec, "path": str(self._path) if self._path else None, **self._load_args}
