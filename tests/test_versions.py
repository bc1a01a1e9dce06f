"""Choosing a version of a versioned output: the latest by default, a named one, or a refusal that helps."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, Version
from kedro.io.core import VersionNotFoundError
from kedro_datasets.text import TextDataset

from metasyn.versions import resolve_version, versions


def _catalog(tmp_path) -> DataCatalog:
    return DataCatalog(
        {
            "report": TextDataset(filepath=str(tmp_path / "report.md"), version=Version(None, None)),
            "plain": TextDataset(filepath=str(tmp_path / "plain.md")),
        }
    )


def test_the_latest_is_the_last_run_and_a_named_one_is_that_run(tmp_path):
    for run_id in ("2026-12-02T02.00.00.000Z", "2026-12-02T01.00.00.000Z"):  # saved out of order
        TextDataset(filepath=str(tmp_path / "report.md"), version=Version(None, run_id)).save(f"written by {run_id}")
    catalog = _catalog(tmp_path)
    assert versions(catalog, "report") == ["2026-12-02T01.00.00.000Z", "2026-12-02T02.00.00.000Z"]
    assert resolve_version(catalog, "report") == "2026-12-02T02.00.00.000Z"
    named = resolve_version(catalog, "report", "2026-12-02T01.00.00.000Z")
    assert catalog.load("report", version=named) == "written by 2026-12-02T01.00.00.000Z"
    with pytest.raises(VersionNotFoundError, match="no version 'today'. Saved versions, oldest first: 2026-12-02T01"):
        resolve_version(catalog, "report", "today")


def test_no_version_yet_and_an_unversioned_dataset_are_refused_clearly(tmp_path):
    catalog = _catalog(tmp_path)
    with pytest.raises(VersionNotFoundError, match="No version of 'report' has been saved yet"):
        resolve_version(catalog, "report")
    with pytest.raises(TypeError, match="'plain' is not versioned: set `versioned: true`"):
        versions(catalog, "plain")
