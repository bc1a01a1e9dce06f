"""The SLURM command wrapper: scripts, and what it makes of sbatch and sacct output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from metasyn.runners import job_runner, sbatch


def test_options_become_long_flags() -> None:
    options = {"cpus_per_task": 4, "mem": "8G", "exclusive": True, "requeue": False, "qos": None}
    assert sbatch.option_flags(options) == ["--cpus-per-task=4", "--mem=8G", "--exclusive"]


def script(tmp_path: Path, command: list[str], max_requeues: int = 2) -> Path:
    """A batch script for ``command`` with one setup line, written under tmp_path."""
    path = tmp_path / "job.sbatch"
    path.write_text(
        sbatch.render_script(
            {"job_name": "demo", "comment": "two words"},
            ["echo setup ran"],
            command,
            log=str(tmp_path / "job-%j.log"),
            max_requeues=max_requeues,
        )
    )
    return path


def run_script(path: Path, tmp_path: Path, restarts: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run a batch script as SLURM would (job id 7), with a stand-in ``scontrol`` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.calls"}\n')
    scontrol.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7"}
    env.pop("SLURM_RESTART_COUNT", None)
    if restarts is not None:
        env["SLURM_RESTART_COUNT"] = str(restarts)
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=30)


def test_script_has_the_options_then_runs_setup_and_command_and_exits_with_its_status(tmp_path: Path) -> None:
    path = script(tmp_path, ["bash", "-c", 'echo "log is $METASYN_JOB_LOG"; exit 3'])
    assert path.read_text().splitlines()[:3] == [
        "#!/bin/bash",
        "#SBATCH --job-name=demo",
        "#SBATCH '--comment=two words'",
    ]
    done = run_script(path, tmp_path)
    assert done.returncode == 3
    assert done.stdout.splitlines() == ["setup ran", f"log is {tmp_path}/job-7.log"]
    assert f"{job_runner.ATTEMPT}1 of at most 3" in done.stderr


def test_script_refuses_an_attempt_beyond_max_requeues(tmp_path: Path) -> None:
    done = run_script(script(tmp_path, ["echo", "command ran"], max_requeues=1), tmp_path, restarts=2)
    assert done.returncode == 1
    assert "command ran" not in done.stdout
    assert f"{job_runner.REQUEUES_EXHAUSTED}requeued 2 times, max_requeues is 1" in done.stderr


@pytest.mark.parametrize(("restarts", "requeued"), [(None, True), (1, True), (2, False)])
def test_the_time_limit_signal_requeues_the_job_while_requeues_remain(
    tmp_path: Path, restarts: int | None, requeued: bool
) -> None:
    # The command sends the batch shell the USR1 that `--signal=B:USR1@...` sends before the time limit.
    path = script(tmp_path, ["bash", "-c", "kill -USR1 $PPID; sleep 0.5; echo finished"], max_requeues=2)
    done = run_script(path, tmp_path, restarts)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "finished"
    calls = tmp_path / "scontrol.calls"
    assert (calls.read_text() if calls.exists() else "") == ("requeue 7\n" if requeued else "")
    assert (f"{job_runner.REQUEUED}near the time limit" in done.stderr) == requeued
    assert (job_runner.REQUEUES_EXHAUSTED in done.stderr) == (not requeued)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """Record SLURM commands instead of running them; answer as sbatch and sacct would."""
    made: list[Sequence[str]] = []
    answers = {
        "sbatch": "42;cluster\n",
        "sacct": "41|COMPLETED|0:0|00:00:03|00:05:00\n42|CANCELLED by 0|0:0|00:00:00|01:00:00\n",
        "scancel": "",
    }

    def call(args: Sequence[str]) -> str:
        made.append(list(args))
        return answers[args[0]]

    monkeypatch.setattr(sbatch, "_call", call)
    return made


def test_submit_chains_dependencies_and_reads_the_id(calls: list[Sequence[str]]) -> None:
    assert sbatch.submit(Path("job.sbatch"), ["40", "41"]) == "42"
    assert calls == [["sbatch", "--parsable", "--dependency=afterok:40:41", "job.sbatch"]]


def test_statuses_reads_sacct(calls: list[Sequence[str]]) -> None:
    records = sbatch.statuses(["41", "42"])
    assert records["41"] == sbatch.JobStatus("COMPLETED", "0:0", "00:00:03", "00:05:00")
    assert records["42"].state == "CANCELLED"
    assert all(r.finished for r in records.values())
    assert "--jobs=41,42" in calls[0]


def test_a_missing_command_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sbatch.SlurmCommandError, match="'scancel' not found"):
        sbatch.cancel(["1"])


def test_a_failing_command_raises_with_its_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "sacct"
    fake.write_text("#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sbatch.SlurmCommandError, match="accounting storage is disabled"):
        sbatch.statuses(["1"])


def test_every_cluster_job_writes_sparse_progress_bars() -> None:
    """conf/slurm's setup lines reach every batch script: tqdm writes once a minute, not once a step."""
    import yaml

    from tests.conftest import PROJECT_ROOT

    setup = yaml.safe_load((PROJECT_ROOT / "conf" / "slurm" / "slurm.yml").read_text())["setup"]
    rendered = sbatch.render_script({}, setup, ["kedro", "run"], log="job-%j.log", max_requeues=3)
    assert "export TQDM_MININTERVAL=60" in rendered.splitlines()[2]
