"""The run record: written at the start, after every node and at the end, with the fields it promises."""

from __future__ import annotations

import json
import subprocess
import time
from types import SimpleNamespace

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node

from metasyn.run_record import (
    RUN_ID_DATASET,
    RUNS_DIRECTORY,
    RunRecordHook,
    git_state,
    latest_records,
    package_versions,
)


def _identity(value):
    return value


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_run_leaves_a_record_with_every_field_and_each_nodes_time(project):
    hook = RunRecordHook()
    catalog = DataCatalog({"parameters": MemoryDataset({"synergy": {"steps": 40}})})
    run_params = {"run_id": "2026-12-02T01.00.00.000Z", "env": "smoke", "pipeline_names": ["synergy"]}
    hook.before_pipeline_run(run_params, None, catalog)
    path = project / RUNS_DIRECTORY / "2026-12-02T01.00.00.000Z.json"
    assert json.loads(path.read_text())["status"] == "running"  # written before any node: never lost
    work = node(_identity, "a", "b", name="identity")
    hook.before_node_run(work)
    hook.after_node_run(work)
    before_save = json.loads(path.read_text())["nodes"][0]["seconds"]
    time.sleep(0.05)  # a lazily saved output does its work while it is saved
    hook.after_dataset_saved("b", work)
    hook.after_pipeline_run()
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["finished"] >= record["started"]
    assert record["environment"] == "smoke" and record["pipeline"] == ["synergy"]
    assert record["parameters"] == {"synergy": {"steps": 40}}
    assert [entry["name"] for entry in record["nodes"]] == ["identity"]
    assert record["nodes"][0]["seconds"] >= before_save + 0.05  # counted until its output was saved
    assert record["packages"]["torch"] and record["device"]["kind"] in {"cpu", "cuda"}
    assert set(record) >= {"run_id", "git", "python", "namespaces"}
    assert latest_records(project / RUNS_DIRECTORY)[-1]["run_id"] == record["run_id"]
    assert not list((project / RUNS_DIRECTORY).glob("*.tmp"))


def test_a_failed_run_says_so_with_the_error(project):
    hook = RunRecordHook()
    hook.after_context_created(SimpleNamespace(project_path=project / "elsewhere"))  # not the working directory
    hook.before_pipeline_run({"run_id": "run-1"}, None, DataCatalog())
    hook.on_pipeline_error(ValueError("synergy.steps must exceed tau + 2"))
    record = json.loads((project / "elsewhere" / RUNS_DIRECTORY / "run-1.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: synergy.steps must exceed tau + 2"
    assert record["parameters"] is None and record["environment"] == "local"


def test_a_runs_catalog_holds_its_save_version_as_the_run_id():
    hook = RunRecordHook()
    catalog = DataCatalog({RUN_ID_DATASET: MemoryDataset()})
    hook.after_catalog_created(catalog, "2026-12-02T01.00.00.000Z")  # a run's catalog: saved with the session id
    assert catalog.load(RUN_ID_DATASET) == "2026-12-02T01.00.00.000Z"
    notebook = DataCatalog({RUN_ID_DATASET: MemoryDataset()})
    hook.after_catalog_created(notebook, None)  # a catalog outside a run has no run id
    assert not notebook.exists(RUN_ID_DATASET)


def test_git_state_names_the_commit_and_sees_a_changed_tracked_file(project):
    assert git_state(project) == {"commit": None, "dirty": None}  # not a repository
    subprocess.run(["git", "init", "-q"], check=True)
    (project / "tracked.txt").write_text("one")
    subprocess.run(["git", "add", "tracked.txt"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (project / "untracked.txt").write_text("ignored")  # untracked files do not make the checkout dirty
    assert git_state(project) == {"commit": commit, "dirty": False}
    (project / "tracked.txt").write_text("two")
    assert git_state(project) == {"commit": commit, "dirty": True}


def test_package_versions_name_missing_packages_none():
    assert package_versions(["numpy", "no-such-package-metasyn"]) == {
        "numpy": package_versions(["numpy"])["numpy"],
        "no-such-package-metasyn": None,
    }
