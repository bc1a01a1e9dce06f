"""The SLURM runner on a real local cluster (scripts/slurm_local.sh): runs, failures, requeues, reruns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from metasyn.runners import job_runner
from tests.runners.conftest import SLURM_RUN, KedroRun

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
    assert set(jobs) == {"source", "left", "right", "report", "nap", "wake"}
    group_of = {job_id: group for group, (job_id, _) in jobs.items()}
    waits_for = {group: sorted(group_of[i] for i in after) for group, (_, after) in jobs.items()}
    assert waits_for == {
        "source": [],
        "left": ["source"],
        "right": ["source"],
        "report": ["left", "right"],
        "nap": [],
        "wake": ["nap"],
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
    # right.check raises, and report depends on right. nap.sleep sleeps past nap's 1-minute limit in its
    # first attempt: SLURM's warning before the limit (--signal) requeues it, and wake waits for it.
    failed = kedro_run("--params=fail=true,sleep=300", env=slurm_cluster)
    assert failed.returncode != 0
    jobs = submitted(failed.stderr)
    right, nap, report, wake = (jobs[group][0] for group in ("right", "nap", "report", "wake"))
    [right_log] = (slurm_project / "logs" / "slurm").glob(f"*/*-right-{right}.log")
    assert (
        f"group 'right' (job {right}): FAILED (exit code 1:0); node right.check failed; log: {right_log}"
        in failed.stderr
    )
    assert f"group 'report' (job {report}): CANCELLED, as a job it depends on failed" in failed.stderr
    assert f"group 'nap' (job {nap})" not in failed.stderr.split("SLURM jobs did not complete:")[1]
    [nap_log] = (slurm_project / "logs" / "slurm").glob(f"*/*-nap-{nap}.log")
    log = nap_log.read_text()
    assert f"{job_runner.REQUEUED}near the time limit" in log
    assert log.index(f"{job_runner.ATTEMPT}1 of at most 2") < log.index(f"{job_runner.ATTEMPT}2 of at most 2")
    assert json.loads((slurm_project / "data" / "nap_slept.json").read_text()) == {"n": 5, "slept": 0, "attempt": 2}
    records = accounting([job_id for job_id, _ in jobs.values()], slurm_cluster)
    # "CANCELLED by 0" when the runner cancelled it, "CANCELLED" when SLURM (kill-on-invalid-dep) was first
    states = {r["JobName"]: r["State"].split()[0] for r in records.values()}
    assert states == {
        "smoke.source": "COMPLETED",
        "smoke.left": "COMPLETED",
        "smoke.right": "FAILED",
        "smoke.report": "CANCELLED",
        "smoke.nap": "COMPLETED",
        "smoke.wake": "COMPLETED",
    }
    assert datetime.fromisoformat(records[wake]["Start"]) >= datetime.fromisoformat(records[nap]["End"])

    rerun = kedro_run(env=slurm_cluster)
    assert rerun.returncode == 0, rerun.stderr
    assert set(submitted(rerun.stderr)) == {"right", "report"}
    for group in ("source", "left", "nap", "wake"):
        assert f"Skipping group '{group}': its outputs exist" in rerun.stderr
    assert json.loads((slurm_project / "data" / "report.json").read_text()) == {"left_total": 55, "right_sum": 45}


def test_a_preempted_job_is_requeued_resumes_after_its_finished_nodes_and_the_chain_completes(
    slurm_project: Path, slurm_cluster: dict[str, str]
) -> None:
    # A limit long enough that only the preemption (scontrol requeue, as PreemptMode=REQUEUE does) requeues.
    config = slurm_project / "conf" / "slurm" / "slurm.yml"
    settings = yaml.safe_load(config.read_text())
    settings["profiles"]["short"]["time"] = 5
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **slurm_cluster}
    output = slurm_project / "runner.log"
    with output.open("w") as stderr:
        runner = subprocess.Popen([*SLURM_RUN, "--params=sleep=60"], cwd=slurm_project, env=env, stderr=stderr)
        try:
            nap_log = _wait_for_nap_to_sleep(slurm_project, output, runner)
            nap = nap_log.stem.rsplit("-", 1)[1]
            subprocess.run(["scontrol", "requeue", nap], env=env, check=True)
            assert runner.wait(timeout=240) == 0, output.read_text()
        finally:
            runner.kill()
    log = nap_log.read_text()
    assert f"{job_runner.ATTEMPT}2 of at most 2" in log
    second = log.split(f"{job_runner.ATTEMPT}2 of at most 2")[1]
    assert f"{job_runner.SKIPPED}nap.rest" in second
    assert f"{job_runner.STARTED}nap.rest" not in second
    assert f"{job_runner.FINISHED}nap.sleep" in second
    assert json.loads((slurm_project / "data" / "nap_slept.json").read_text()) == {"n": 5, "slept": 0, "attempt": 2}
    jobs = submitted(output.read_text())
    records = accounting([job_id for job_id, _ in jobs.values()], slurm_cluster)
    assert {r["State"] for r in records.values()} == {"COMPLETED"}
    wake = records[jobs["wake"][0]]
    assert datetime.fromisoformat(wake["Start"]) >= datetime.fromisoformat(records[nap]["End"])


def _wait_for_nap_to_sleep(project: Path, runner_log: Path, runner: subprocess.Popen[bytes]) -> Path:
    """The nap job's log, once it shows nap.rest finished and nap.sleep started."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert runner.poll() is None, runner_log.read_text()
        jobs = submitted(runner_log.read_text())
        logs = list((project / "logs" / "slurm").glob(f"*/*-nap-{jobs['nap'][0]}.log")) if "nap" in jobs else []
        if logs and f"{job_runner.STARTED}nap.sleep" in logs[0].read_text():
            assert f"{job_runner.FINISHED}nap.rest" in logs[0].read_text()
            return logs[0]
        time.sleep(0.5)
    raise AssertionError(f"nap.sleep did not start within 2 minutes:\n{runner_log.read_text()}")
