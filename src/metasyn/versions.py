"""Versioned outputs (the comparison's report, tables and figures): which runs wrote them, and choosing one.

A versioned dataset saves each run's data under ``<filepath>/<run id>/<file name>`` and loads the latest run's
unless asked for another (``catalog.load(name, version=...)``, ``kedro run --load-versions name:<run id>``).
``resolve_version`` names that version up front, and refuses one that does not exist by listing those that do,
where Kedro would only report a missing file.
"""

from __future__ import annotations

from kedro.io import AbstractVersionedDataset, CatalogProtocol
from kedro.io.core import VersionNotFoundError


def versions(catalog: CatalogProtocol, name: str) -> list[str]:
    """The versions (run ids) saved of the versioned dataset ``name``, oldest first."""
    dataset = catalog.get(name)
    # File datasets are all AbstractVersionedDataset; versioning is on where the entry gave them a Version.
    if not isinstance(dataset, AbstractVersionedDataset) or dataset._version is None:
        raise TypeError(f"Dataset '{name}' is not versioned: set `versioned: true` on its catalog entry.")
    return dataset.list_versions(full_path=False)[::-1]  # Kedro lists the latest first


def resolve_version(catalog: CatalogProtocol, name: str, version: str | None = None) -> str:
    """``version`` if ``name`` has it, or with None its latest; refused, naming those that exist, otherwise."""
    found = versions(catalog, name)
    if not found:
        raise VersionNotFoundError(f"No version of '{name}' has been saved yet: run the pipeline that writes it.")
    if version is None:
        return found[-1]
    if version not in found:
        raise VersionNotFoundError(
            f"'{name}' has no version '{version}'. Saved versions, oldest first: {', '.join(found)}."
        )
    return version
