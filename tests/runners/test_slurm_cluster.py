"""The SLURM runner on a real local cluster (scripts/slurm_local.sh): runs, failures, time limits, reruns."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.runners.conftest import KedroRun

pytestmark = pytest.mark.slurm

SUBMITTED = re.compile(r"Submitted group '(\w+)' \(job (\d+)\)(?: after jobs ([\d, ]+))?;")


def submitted(output: str) -> dict[str, tuple[str, list[str]]]:
    """What the runner reports submitting: group -> (job id, ids of the jobs it waits for)."""
    return {group: (job_id, after.split(", ") if after else []) for group, job_id, after in SUBMITTED.findall(output)}


def accounting(job_ids: list[str], cluster: dict[str, str]) -> dict[str, dict[str, str]]:
    """sacct's record of each job: name, state, start, end and allocated resources."""
    fields = ["JobID", "JobName", "State", "Start", "End", "AllocTRES"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", f"--format={','.join(fields)}", f"--jobs={','.join(job_ids)}"],
        env={**os.environ, **cluster},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("|")[0]: dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()}


def test_runs_one_job_per_group_in_dependency_order(
    kedro_run: KedroRun, slurm_project: Path, slurm_cluster: dict[str, str]
) -> None:
    result = kedro_run(env=slurm_cluster)
    assert result.returncode == 0, result.stderr
    assert json.loads((slurm_project / "data" / "report.json").read_text()) == {"left_total": 55, "right_sum": 45}

    jobs = submitted(result.stderr)
    assert set(jobs) == {"source", "left", "right", "report", "nap"}
    group_of = {job_id: group for group, (job_id, _) in jobs.items()}
    waits_for = {group: sorted(group_of[i] for i in after) for group, (_, after) in jobs.items()}
    assert waits_for == {
        "source": [],
        "left": ["source"],
        "right": ["source"],
        "report": ["left", "right"],
        "nap": [],
    }

    records = accounting(list(group_of), slurm_cluster)
    assert {r["JobName"] for r in records.values()} == {f"smoke.{group}" for group in jobs}
    assert {r["State"] for r in records.values()} == {"COMPLETED"}
    for group, (job_id, after) in jobs.items():
        start = datetime.fromisoformat(records[job_id]["Start"])
        assert all(start >= datetime.fromisoformat(records[a]["End"]) for a in after), group
    assert "gres/gpu=1" in records[jobs["right"][0]]["AllocTRES"]


def test_failure_names_the_node_cancels_dependents_and_a_rerun_resumes(
    kedro_run: KedroRun, slurm_project: Path, slurm_cluster: dict[str, str]
) -> None:
    # right.check raises; nap sleeps past its 1-minute limit; report depends on right.
    failed = kedro_run("--params=fail=true,sleep=300", env=slurm_cluster)
    assert failed.returncode != 0
    jobs = submitted(failed.stderr)
    right, nap, report = (jobs[group][0] for group in ("right", "nap", "report"))
    [right_log] = (slurm_project / "logs" / "slurm").glob(f"*/*-right-{right}.log")
    assert (
        f"group 'right' (job {right}): FAILED (exit code 1:0); node right.check failed; log: {right_log}"
        in failed.stderr
    )
    assert f"group 'nap' (job {nap}): killed by the time limit (00:01:00) after 00:01:" in failed.stderr
    assert re.search(rf"group 'nap' \(job {nap}\): .*; while running node nap; log: ", failed.stderr)
    assert f"group 'report' (job {report}): CANCELLED, as a job it depends on failed" in failed.stderr
    records = accounting([job_id for job_id, _ in jobs.values()], slurm_cluster).values()
    # "CANCELLED by 0" when the runner cancelled it, "CANCELLED" when SLURM (kill-on-invalid-dep) was first
    states = {r["JobName"]: r["State"].split()[0] for r in records}
    assert states == {
        "smoke.source": "COMPLETED",
        "smoke.left": "COMPLETED",
        "smoke.right": "FAILED",
        "smoke.report": "CANCELLED",
        "smoke.nap": "TIMEOUT",
    }

    rerun = kedro_run(env=slurm_cluster)
    assert rerun.returncode == 0, rerun.stderr
    assert set(submitted(rerun.stderr)) == {"right", "report", "nap"}
    assert "Skipping group 'source': its outputs exist" in rerun.stderr
    assert "Skipping group 'left': its outputs exist" in rerun.stderr
    assert json.loads((slurm_project / "data" / "report.json").read_text()) == {"left_total": 55, "right_sum": 45}
