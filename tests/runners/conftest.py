"""Fixtures for the SLURM runner: a copy of the smoke Kedro project, and a real local SLURM cluster."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SMOKE_PROJECT = HERE / "smoke_project"
CLUSTER_SCRIPT = HERE.parents[1] / "scripts" / "slurm_local.sh"
CLUSTER_PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")

KedroRun = Callable[..., subprocess.CompletedProcess[str]]
# `kedro run` with the SLURM runner, as a user types it in the smoke project.
SLURM_RUN = [sys.executable, "-m", "kedro", "run", "--env=slurm", "--runner=metasyn.runners.SlurmRunner"]


@pytest.fixture
def slurm_project(tmp_path: Path) -> Path:
    """A fresh copy of the runner's smoke project, so every test starts without data or logs."""
    return Path(
        shutil.copytree(SMOKE_PROJECT, tmp_path / "smoke", ignore=shutil.ignore_patterns("data", "logs", ".viz"))
    )


@pytest.fixture
def kedro_run(slurm_project: Path) -> KedroRun:
    """``kedro run --env slurm --runner SlurmRunner ARGS`` in the smoke project, as a subprocess."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SLURM_RUN, *args],
            cwd=slurm_project,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _unavailable() -> str | None:
    """Why this machine cannot host the local cluster, or None if it can."""
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (slurmd starts jobs as their user)"
    if not all(map(shutil.which, CLUSTER_PROGRAMS)) and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


def _free_port_base(count: int = 4) -> int:
    """The first of ``count`` consecutive free loopback ports (the cluster script's SLURM_LOCAL_PORT)."""
    for _ in range(50):
        base = random.randrange(20000, 60000)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free loopback ports for the SLURM cluster")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node SLURM cluster with accounting, private to this test session; yields its client env."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM tests, but {reason}")
        pytest.skip(reason)
    if not all(map(shutil.which, CLUSTER_PROGRAMS)):
        subprocess.run([CLUSTER_SCRIPT, "install"], check=True)
    state = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        "SLURM_LOCAL_DIR": str(state),
        "SLURM_LOCAL_PORT": str(_free_port_base()),
        "SLURM_LOCAL_CPUS": "4",
        "SLURM_LOCAL_MEM_MB": "4096",
        "SLURM_LOCAL_GPUS": "1",
    }
    try:
        subprocess.run([CLUSTER_SCRIPT, "start"], env=env, check=True, timeout=180)
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run([CLUSTER_SCRIPT, "stop"], env=env, check=True, timeout=120)
