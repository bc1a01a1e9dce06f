"""Provenance of a run: what code, settings and machine made the outputs, and how long each node took.

``RunRecordHook`` (registered in ``settings.py``) writes ``data/08_reporting/runs/<run id>.json`` (in the
project directory) when a run starts and rewrites it after every node, so an interrupted run still leaves its
record (``status`` says ``running``, ``failed`` or ``completed``). Fields: ``run_id``, ``started``, ``finished`` (ISO 8601, UTC),
``status``, ``error``, ``git`` (``commit``, ``dirty``), ``python``, ``packages`` (versions of the libraries
the numbers depend on), ``environment`` (the Kedro config environment), ``pipeline`` and ``namespaces`` as
asked for, ``device`` (CUDA device names, or the CPU model), ``parameters`` (every parameter as resolved),
``nodes`` (name, finished, seconds from the node's start until its last output was saved, in the order the
nodes finished).

The run id is the Kedro session id, which is also the run's save version: the folder name of every versioned
output it writes (``data/08_reporting/comparison/report.md/<run id>/report.md``). The hook also puts it in the
catalog as the ``run_id`` dataset, for nodes that name their own run (the report links its figures).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from kedro.framework.hooks import hook_impl

from metasyn.atomic import atomic_file

RUNS_DIRECTORY = Path("data/08_reporting/runs")
# The catalog entry holding the run id (declared in catalog_comparison.yml for its kedro-viz layer).
RUN_ID_DATASET = "run_id"
PACKAGES = ("kedro", "torch", "transformers", "trl", "peft", "datasets", "numpy", "scipy", "pandas", "scikit-learn")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_state(directory: Path) -> dict[str, Any]:
    """The commit checked out in ``directory`` and whether tracked files differ from it (None outside git)."""

    def git(*arguments: str) -> str | None:
        try:
            done = subprocess.run(["git", *arguments], cwd=directory, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None for one that is not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> dict[str, Any]:
    """The accelerators this process sees: CUDA device names, else the CPU model and core count."""
    if torch.cuda.is_available():
        return {"kind": "cuda", "names": [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]}
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"kind": "cpu", "names": [model], "threads": torch.get_num_threads()}


def latest_records(directory: Path = RUNS_DIRECTORY) -> list[dict]:
    """Every run record in ``directory``, oldest first (by start time)."""
    records = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    return sorted(records, key=lambda record: record.get("started", ""))


class RunRecordHook:
    """Writes the run record (module docstring) at the start, after every node, and at the end of a run."""

    def __init__(self) -> None:
        self._record: dict[str, Any] | None = None
        self._node_started: dict[str, float] = {}
        self._project_path = Path.cwd()

    def _write(self) -> None:
        # Atomic: a reader (the report, a notebook) never sees half a record.
        with atomic_file(self._project_path / RUNS_DIRECTORY / f"{self._record['run_id']}.json") as scratch:
            scratch.write_text(json.dumps(self._record, indent=2, default=str))

    @hook_impl
    def after_context_created(self, context) -> None:
        # A session may run a project other than the working directory's (a notebook, the test suite).
        self._project_path = Path(context.project_path)

    @hook_impl
    def after_catalog_created(self, catalog, save_version: str | None) -> None:
        # A run's catalog is created with the session id as its save version (a notebook's, with none).
        if save_version is not None and RUN_ID_DATASET in catalog:
            catalog.save(RUN_ID_DATASET, save_version)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        # Kedro's run_id is the session id, the save version of the run's versioned outputs.
        run_id = str(run_params.get("run_id") or datetime.now(UTC).strftime("%Y-%m-%dT%H.%M.%S.%fZ"))
        self._record = {
            "run_id": run_id,
            "started": _now(),
            "finished": None,
            "status": "running",
            "error": None,
            "git": git_state(self._project_path),
            "python": sys.version.split()[0],
            "packages": package_versions(),
            "environment": run_params.get("env") or "local",
            "pipeline": run_params.get("pipeline_names") or run_params.get("pipeline_name") or "__default__",
            "namespaces": run_params.get("namespaces"),
            "device": device_description(),
            "parameters": catalog.load("parameters") if "parameters" in catalog else None,
            "nodes": [],
        }
        self._write()

    @hook_impl
    def before_node_run(self, node) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        if self._record is None:
            return
        seconds = time.perf_counter() - self._node_started.get(node.name, time.perf_counter())
        self._record["nodes"].append({"name": node.name, "finished": _now(), "seconds": round(seconds, 3)})
        self._write()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        # Outputs are saved after after_node_run, and a lazily saved output (synergy's head activity) does its
        # work while saving: a node's time runs until its last output is saved.
        if self._record is None or node is None or node.name not in self._node_started:
            return
        entry = next((entry for entry in reversed(self._record["nodes"]) if entry["name"] == node.name), None)
        if entry is not None:
            entry |= {"finished": _now(), "seconds": round(time.perf_counter() - self._node_started[node.name], 3)}
            self._write()

    @hook_impl
    def after_pipeline_run(self) -> None:
        if self._record is not None:
            self._record |= {"finished": _now(), "status": "completed"}
            self._write()

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        if self._record is not None:
            self._record |= {"finished": _now(), "status": "failed", "error": f"{type(error).__name__}: {error}"}
            self._write()
