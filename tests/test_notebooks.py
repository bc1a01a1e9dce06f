"""The notebooks in notebooks/: committed without outputs, and run headless on a smoke run without a cell error.

Executed copies (with outputs) go to ``test-artifacts/notebooks/`` for a look at what a researcher sees.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from metasyn.run_record import RUNS_DIRECTORY, latest_records
from tests.conftest import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "notebooks"
# results.ipynb shows the reliability diagrams, the PhiID matrices, the layer profiles and the delta heatmaps.
FIGURES = {"results.ipynb": 4}


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_there_are_notebooks_and_each_is_checked():
    assert {path.name for path in NOTEBOOKS} == set(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    with_outputs = [
        index for index, cell in enumerate(_code_cells(notebook)) if cell.outputs or cell.execution_count is not None
    ]
    assert with_outputs == [], (
        f"Code cells {with_outputs} of {path.name} hold outputs; clear them before committing "
        f"(`jupyter nbconvert --clear-output --inplace {path.relative_to(PROJECT_ROOT)}`)."
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_on_a_smoke_run(path, run_smoke, monkeypatch):
    project = run_smoke("comparison")
    # The kernel inherits the environment: the notebook's first cell reads which project and environment to load.
    monkeypatch.setenv("METASYN_PROJECT_PATH", str(project))
    monkeypatch.setenv("METASYN_ENV", "smoke")
    # A named comparison run (the smoke run's id), read through the catalog's versions; None would be the latest.
    [record] = [record for record in latest_records(project / RUNS_DIRECTORY) if record["pipeline"] == ["comparison"]]
    monkeypatch.setenv("METASYN_REPORT_VERSION", record["run_id"])
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, on any cell error
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, ARTIFACTS / path.name)
    images = [
        output for cell in _code_cells(notebook) for output in cell.outputs if "image/png" in output.get("data", {})
    ]
    assert len(images) == FIGURES[path.name]  # each figure shown once
    printed = "".join(output.get("text", "") for cell in _code_cells(notebook) for output in cell.outputs)
    assert f"Reading {project.resolve()}, environment smoke" in printed
    assert f"Comparison of run {record['run_id']} (runs with a report, oldest first: {record['run_id']})" in printed
    # The verdict the notebook prints is the one the run saved, word for word.
    verdict = project / "data" / "08_reporting" / "comparison" / "verdict.txt" / record["run_id"] / "verdict.txt"
    assert verdict.read_text().strip() in printed
