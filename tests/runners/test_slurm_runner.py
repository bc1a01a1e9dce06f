"""The SLURM runner without a cluster: config, job commands, failure reports, dry runs, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.hooks import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pickle import PickleDataset

from metasyn.runners import JobRunner
from metasyn.runners.config import ClusterConfig, load_cluster_config
from metasyn.runners.job_runner import FAILED, FINISHED, LOG_VARIABLE, SKIPPED, STARTED
from metasyn.runners.plan import plan_groups
from metasyn.runners.sbatch import JobStatus
from metasyn.runners.slurm import Job, KedroInvocation, _failure
from tests.runners.conftest import SMOKE_PROJECT, KedroRun


def _loader(conf_source: Path, env: str) -> OmegaConfigLoader:
    return OmegaConfigLoader(str(conf_source), env=env, base_env="base", default_run_env="local")


def test_reads_cluster_config_of_the_env() -> None:
    config = load_cluster_config(_loader(SMOKE_PROJECT / "conf", "slurm"), "slurm")
    assert config.poll_interval == 0.5
    assert config.sbatch_options("gpu") == {"time": "00:05:00", "mem": "512M", "cpus_per_task": 1, "gres": "gpu:1"}


def test_rejects_unknown_config_keys(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "slurm.yml").write_text("profile:\n  gpu: {gres: 'gpu:1'}\n")
    with pytest.raises(ValueError, match=r"Unknown keys .*: profile"):
        load_cluster_config(_loader(tmp_path, "slurm"), "slurm")


def test_unknown_profile_names_the_tag() -> None:
    with pytest.raises(ValueError, match=r"'slurm\.tpu' names no profile .*\(profiles: gpu\)"):
        ClusterConfig(profiles={"gpu": {}}).sbatch_options("tpu")


def test_invocation_repeats_the_kedro_run_options() -> None:
    options = {"env": "slurm", "params": {"fail": True}, "pipelines": ["a"], "conf_source": None}
    with click.Context(click.Command("run"), obj=None) as ctx:
        ctx.params.update(options)
        assert KedroInvocation.current().env == "slurm"
        assert KedroInvocation.current(env="other").env == "other"
        assert KedroInvocation.current().pipelines == ("a",)


def test_job_command_runs_the_group_nodes_with_the_same_options() -> None:
    invocation = KedroInvocation(
        project_path=Path("/p"),
        env="slurm",
        conf_source="/p/conf2",
        params={"fail": True, "model": {"lr": 0.1, "name": None}},
        pipelines=("a", "b"),
        load_versions={"ds": "2026-01-01T00.00.00.000Z"},
    )
    assert invocation.command(["n.one", "n.two"])[1:] == [
        "-m",
        "kedro",
        "run",
        "--env=slurm",
        "--runner=metasyn.runners.JobRunner",
        "--nodes=n.one,n.two",
        "--conf-source=/p/conf2",
        "--pipelines=a,b",
        "--params=fail=true,model.lr=0.1,model.name=null",
        "--load-versions=ds:2026-01-01T00.00.00.000Z",
    ]


def fail(x: int) -> int:
    """Raise."""
    raise RuntimeError(f"no {x}")


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def test_job_runner_marks_started_and_failed_nodes(capfd: pytest.CaptureFixture[str]) -> None:
    pipeline = Pipeline([Node(double, "x", "y", name="double"), Node(fail, "y", "z", name="explode")])
    with pytest.raises(RuntimeError, match="no 2"):
        JobRunner().run(pipeline, DataCatalog({"x": MemoryDataset(1)}), _create_hook_manager())
    marks = [line for line in capfd.readouterr().err.splitlines() if line.startswith("metasyn.runners:")]
    assert marks == [STARTED + "double", FINISHED + "double", STARTED + "explode", FAILED + "explode"]


def test_a_requeued_job_skips_the_nodes_an_earlier_attempt_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # prep -> (y on disk) -> train -> (z in memory) -> score -> (s on disk); an earlier attempt finished
    # prep and train, then died in score. prep is skipped; train reruns, as its output lived in memory.
    pipeline = Pipeline(
        [
            Node(double, "x", "y", name="prep"),
            Node(double, "y", "z", name="train"),
            Node(double, "z", "s", name="score"),
        ]
    )
    catalog = DataCatalog(
        {
            "x": MemoryDataset(1),
            "y": PickleDataset(filepath=str(tmp_path / "y.pkl")),
            "s": PickleDataset(filepath=str(tmp_path / "s.pkl")),
        }
    )
    catalog.save("y", 5)  # as prep's first attempt left it: prep must not rerun, or y would be 2
    log = tmp_path / "job-7.log"
    log.write_text(f"{STARTED}prep\n{FINISHED}prep\n{STARTED}train\n{FINISHED}train\n{STARTED}score\nKilled\n")
    monkeypatch.setenv(LOG_VARIABLE, str(log))
    JobRunner().run(pipeline, catalog, _create_hook_manager())
    marks = [line for line in capfd.readouterr().err.splitlines() if line.startswith("metasyn.runners:")]
    assert marks == [SKIPPED + "prep", STARTED + "train", FINISHED + "train", STARTED + "score", FINISHED + "score"]
    assert catalog.load("s") == 20


@pytest.fixture
def job(tmp_path: Path) -> Job:
    """A submitted job of two nodes, with no log yet."""
    pipeline = Pipeline([Node(double, "x", "y", name="prep"), Node(double, "y", "z", name="train")], namespace="fit")
    [group] = plan_groups(pipeline, "namespace")
    return Job(1, group, tmp_path, group.node_names, job_id="7")


def test_reports_the_node_that_failed(job: Job) -> None:
    job.log_path.write_text(f"...\n{STARTED}fit.prep\n{STARTED}fit.train\n{FAILED}fit.train\nTraceback ...\n")
    report = _failure(job, JobStatus("FAILED", "1:0"))
    assert report == f"FAILED (exit code 1:0); node fit.train failed; log: {job.log_path}"


def test_reports_a_time_limit_kill_and_the_node_it_interrupted(job: Job) -> None:
    job.log_path.write_text(f"{STARTED}fit.prep\n{STARTED}fit.train\n*** CANCELLED DUE TO TIME LIMIT ***\n")
    report = _failure(job, JobStatus("TIMEOUT", "0:0", "01:00:04", "01:00:00"))
    assert report.startswith("killed by the time limit (01:00:00) after 01:00:04; while running node fit.train;")


def test_reports_a_job_that_never_reached_its_nodes(job: Job) -> None:
    report = _failure(job, JobStatus("CANCELLED", "0:0"))
    assert "before its nodes ran (fit.prep, fit.train)" in report


def test_dry_run_prints_the_job_plan_and_scripts_and_submits_nothing(kedro_run: KedroRun, slurm_project: Path) -> None:
    result = kedro_run("--runner-params=dry_run=true", "--params=fail=true")
    assert result.returncode == 0, result.stderr
    # The plan: one line per job (numbered in submission order, which may vary between equally ready jobs).
    plan = result.stdout.split("# ---- job")[0].splitlines()
    assert plan[0] == "# Job plan: 6 jobs, 9 nodes"
    assert sorted(line.split(". ", 1)[1] for line in plan[1:]) == [
        "left [cpus_per_task=1, mem=256M, time=00:05:00; after source]: left.square, left.total",
        "nap [cpus_per_task=1, mem=256M, time=1]: nap.rest, nap.sleep",
        "report [cpus_per_task=1, mem=256M, time=00:05:00; after left, right]: report",
        "right [gres=gpu:1, cpus_per_task=1, mem=512M, time=00:05:00; after source]: right.scale, right.check",
        "source [cpus_per_task=1, mem=256M, time=00:05:00]: source",
        "wake [cpus_per_task=1, mem=256M, time=00:05:00; after nap]: wake",
    ]
    headers = re.findall(r"^# ---- job \d/6: group '(\w+)'(?:, after ([\w, ]+\w))?", result.stdout, re.MULTILINE)
    position = {group: index for index, (group, _) in enumerate(headers)}
    assert all(position[a] < position[group] for group, after in headers for a in after.split(", ") if after)
    assert dict(headers) == {
        "source": "",
        "left": "source",
        "right": "source",
        "report": "left, right",
        "nap": "",
        "wake": "nap",
    }
    right = result.stdout.split("group 'right'")[1].split("# ----")[0]
    for option in (
        "gres=gpu:1",
        "mem=512M",
        "job-name=smoke.right",
        "kill-on-invalid-dep=yes",
        f"chdir={slurm_project}",
        "requeue",
        "signal=B:USR1@30",
        "open-mode=append",
    ):
        assert f"#SBATCH --{option}\n" in right
    assert "--nodes=right.scale,right.check --params=fail=true" in right
    assert "#SBATCH --time=1\n" in result.stdout.split("group 'nap'")[1]
    assert not (slurm_project / "logs").exists()


def test_refuses_datasets_that_would_cross_jobs_in_memory(kedro_run: KedroRun) -> None:
    result = kedro_run("--pipelines=leaky", "--runner-params=dry_run=true")
    assert result.returncode != 0
    assert "loose_numbers (loose_source -> loose_square)" in result.stderr
    assert "#!/bin/bash" not in result.stdout


def test_a_rerun_job_runs_only_the_nodes_whose_outputs_are_missing(kedro_run: KedroRun, slurm_project: Path) -> None:
    (slurm_project / "data").mkdir()
    (slurm_project / "data" / "nap_rested.json").write_text('{"n": 5}')
    result = kedro_run("--runner-params=dry_run=true")
    assert result.returncode == 0, result.stderr
    assert "Group 'nap' skips 1 finished nodes: nap.rest" in result.stderr
    assert re.search(r"^# +\d\. nap \[.*\]: nap.sleep$", result.stdout, re.MULTILINE)
    assert "--nodes=nap.sleep " in result.stdout.split("group 'nap'")[1]
