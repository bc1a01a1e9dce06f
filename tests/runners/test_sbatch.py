"""The SLURM command wrapper: scripts, and what it makes of sbatch and sacct output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from metasyn.runners import sbatch


def test_options_become_long_flags() -> None:
    options = {"cpus_per_task": 4, "mem": "8G", "exclusive": True, "requeue": False, "qos": None}
    assert sbatch.option_flags(options) == ["--cpus-per-task=4", "--mem=8G", "--exclusive"]


def test_script_has_options_setup_and_execs_the_command() -> None:
    script = sbatch.render_script(
        {"job_name": "demo", "comment": "two words"},
        ["module load cuda"],
        ["python", "-m", "kedro", "run", "--nodes=a,b"],
    )
    assert script.splitlines() == [
        "#!/bin/bash",
        "#SBATCH --job-name=demo",
        "#SBATCH '--comment=two words'",
        "set -e",
        "module load cuda",
        "exec python -m kedro run --nodes=a,b",
    ]


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
    script = sbatch.render_script({}, setup, ["kedro", "run"])
    assert "export TQDM_MININTERVAL=60" in script.splitlines()[2]
