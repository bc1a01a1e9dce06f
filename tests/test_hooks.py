"""The project hook stops a run before any node when a model it needs is missing (metasyn.hooks)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.text import TextDataset

from metasyn.hooks import CheckInputsHook, CheckModelsHook, missing_inputs_message
from metasyn.lm.models import ModelNotFoundError
from tests.conftest import copy_project

MISSING_NLI = {"name": "nli", "nli": {"model": "metasyn-tests/no-such-nli", "batch_size": 4, "device": "cpu"}}


def _check(parameter: str, value) -> None:
    """Run the hook on a one-node pipeline that reads ``parameter``."""
    pipeline = Pipeline([node(func=lambda settings: settings, inputs=parameter, outputs="out", name="reads")])
    CheckModelsHook().before_pipeline_run({}, pipeline, DataCatalog({parameter: MemoryDataset(value)}))


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("params:calibration.matcher", MISSING_NLI),  # the parameter is the matcher's settings
        ("params:data_prep.sampling", {"n_samples": 10, "matcher": MISSING_NLI}),  # the settings sit inside it
    ],
)
def test_a_missing_nli_classifier_stops_the_run_before_any_node(parameter, value):
    with pytest.raises(ModelNotFoundError, match=r"hf download metasyn-tests/no-such-nli"):
        _check(parameter, value)


def test_matchers_without_a_model_and_other_parameters_pass():
    _check("params:calibration.matcher", {"name": "contains", "nli": {"model": None}})
    _check("params:data_prep.sampling", {"n_samples": 10, "matcher": "exact"})
    _check("params:calibration.metrics.ece_bins", 10)


def test_missing_inputs_are_named_with_the_pipeline_that_makes_them_and_the_namespaces_that_can_run():
    message = missing_inputs_message(
        {"metacog.model": ["finetune"], "control_shuffled.model": ["finetune"]}, ["base", "random_init"],
        ["control_shuffled", "metacog"],
    )  # fmt: skip
    assert message == (
        "This run needs inputs that do not exist yet: control_shuffled.model (made by finetune); metacog.model "
        "(made by finetune). Run `kedro run --pipelines finetune` first, or run only the namespaces whose inputs "
        "exist: `--namespaces base,random_init`."
    )


def test_an_input_that_exists_lets_the_run_start_and_one_that_does_not_stops_it(tmp_path):
    pipeline = Pipeline([
        node(func=lambda x: x, inputs="made_before", outputs="metacog.out", name="metacog.reads"),
        node(func=lambda: 1, inputs=None, outputs="base.out", name="base.starts"),
    ])  # fmt: skip
    (tmp_path / "made.txt").write_text("x")
    present = DataCatalog({"made_before": TextDataset(filepath=str(tmp_path / "made.txt"))})
    CheckInputsHook().before_pipeline_run({}, pipeline, present)  # no error
    absent = DataCatalog({"made_before": TextDataset(filepath=str(tmp_path / "not-yet.txt"))})
    with pytest.raises(ValueError, match=r"made_before \(made by no registered pipeline\).*--namespaces base`"):
        CheckInputsHook().before_pipeline_run({}, pipeline, absent)


@pytest.mark.slow
def test_a_fresh_synergy_run_stops_at_once_with_one_paragraph(tmp_path):
    project = copy_project(tmp_path / "project")
    started = time.perf_counter()
    done = subprocess.run(
        [Path(sys.executable).with_name("kedro"), "run", "--env", "smoke", "--pipeline", "synergy"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "This run needs inputs that do not exist yet:" in output and "metacog.model (made by finetune)" in output
    assert "--namespaces base,random_init" in output
    assert "Traceback" not in output  # one paragraph, not a trace through Kedro
    assert not (project / "data" / "07_model_output").exists()  # nothing was written
    print(f"fresh synergy run stopped after {elapsed:.1f} s")
