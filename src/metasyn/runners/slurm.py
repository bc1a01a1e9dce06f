"""Run a Kedro pipeline on SLURM: one batch job per node group, chained by ``afterok`` dependencies.

``kedro run --env slurm --runner metasyn.runners.SlurmRunner [--runner-params wait=false,dry_run=true]``
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import kedro.framework.project as kedro_project
from kedro.framework.project import settings
from kedro.runner import AbstractRunner
from kedro.utils import find_kedro_project

from metasyn.context import run_config_loader
from metasyn.runners import job_runner, sbatch
from metasyn.runners.config import ClusterConfig, load_cluster_config
from metasyn.runners.plan import (
    Group,
    finished_nodes,
    groups_to_run,
    merge_light_groups,
    nodes_to_run,
    plan_groups,
    unpersisted_crossings,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from pluggy import PluginManager

JOB_RUNNER = "metasyn.runners.JobRunner"
# sacct may fail for a moment (slurmdbd restarts, overload); give up only when it keeps failing.
MAX_SACCT_FAILURES = 5


class SlurmJobsFailed(RuntimeError):
    """Some SLURM jobs of the run did not complete."""


@dataclass(frozen=True)
class KedroInvocation:
    """The parts of this ``kedro run`` that every job's own ``kedro run`` must repeat."""

    project_path: Path
    env: str
    conf_source: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pipelines: tuple[str, ...] = ()
    load_versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def current(cls, env: str | None = None) -> KedroInvocation:
        """Read the options of the ``kedro run`` command being executed, if any; ``env`` overrides."""
        # Kedro hands a runner only the pipeline and catalog, so the CLI options come from click.
        ctx = click.get_current_context(silent=True)
        cli = ctx.params if ctx is not None and ctx.command.name == "run" else {}
        return cls(
            project_path=find_kedro_project(Path.cwd()) or Path.cwd(),
            env=env
            or cli.get("env")
            or os.environ.get("KEDRO_ENV")
            or settings.CONFIG_LOADER_ARGS.get("default_run_env", "local"),
            conf_source=cli.get("conf_source"),
            params=cli.get("params") or {},
            pipelines=tuple(cli.get("pipelines") or ()),
            load_versions=cli.get("load_versions") or {},
        )

    def command(self, node_names: list[str]) -> list[str]:
        """The ``kedro run`` that runs the given nodes inside a job."""
        args = [sys.executable, "-m", "kedro", "run", f"--env={self.env}", f"--runner={JOB_RUNNER}"]
        args.append("--nodes=" + ",".join(node_names))
        if self.conf_source:
            args.append(f"--conf-source={self.conf_source}")
        if self.pipelines:
            args.append("--pipelines=" + ",".join(self.pipelines))
        if self.params:
            args.append("--params=" + ",".join(f"{k}={v}" for k, v in _dotted(self.params)))
        if self.load_versions:
            args.append("--load-versions=" + ",".join(f"{k}:{v}" for k, v in self.load_versions.items()))
        return args


def _dotted(params: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Flatten nested runtime params back into the ``a.b=value`` form ``--params`` takes."""
    for key, value in params.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        elif value is None:
            yield f"{prefix}{key}", "null"
        else:
            yield f"{prefix}{key}", str(value).lower() if isinstance(value, bool) else str(value)


def _safe(name: str) -> str:
    """A node or group name made fit for file and job names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


@dataclass
class Job:
    """A group's batch job: where its script and log go and, once submitted, its SLURM id."""

    index: int
    group: Group
    folder: Path
    node_names: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    script: str = ""
    job_id: str = ""
    after: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        """File name stem; the index keeps names unique and in submission order."""
        return f"{self.index:02d}-{_safe(self.group.name)}"

    @property
    def script_path(self) -> Path:
        """Where the batch script is written."""
        return self.folder / f"{self.stem}.sbatch"

    @property
    def log_pattern(self) -> Path:
        """The job's log as sbatch's ``--output`` names it (``%j``: the job id)."""
        return self.folder / f"{self.stem}-%j.log"

    @property
    def log_path(self) -> Path:
        """The submitted job's log file."""
        return self.folder / f"{self.stem}-{self.job_id}.log"

    def __str__(self) -> str:
        return f"group '{self.group.name}' (job {self.job_id})" if self.job_id else f"group '{self.group.name}'"


class SlurmRunner(AbstractRunner):
    """Submits each node group as a SLURM job (``kedro run --nodes ...``), then follows the jobs.

    Args:
        is_async: Accepted because ``kedro run`` always passes it; jobs load and save synchronously.
        wait: Follow the jobs until they end and fail if one fails; False returns once submitted.
        dry_run: Print the batch scripts instead of submitting them.
        resume: Skip groups whose persisted outputs all exist, and in the others the nodes whose outputs
            exist, unless a group upstream of them reruns.
        env: Configuration environment of the jobs; defaults to the one of ``kedro run``.
    """

    def __init__(
        self,
        is_async: bool = False,
        wait: bool = True,
        dry_run: bool = False,
        resume: bool = True,
        env: str | None = None,
    ) -> None:
        super().__init__(is_async=is_async)
        self._wait = wait
        self._dry_run = dry_run
        self._resume = resume
        self._env = env

    def _get_executor(self, max_workers: int) -> None:
        """No local executor: the nodes run in SLURM jobs."""
        return None

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Plan the jobs, refuse data that cannot cross jobs, then print or submit and follow them."""
        invocation = KedroInvocation.current(self._env)
        config = load_cluster_config(run_config_loader(), invocation.env)
        groups = plan_groups(pipeline, config.group_by)
        if config.merge_light_groups:
            groups = merge_light_groups(groups)
        _refuse_unpersisted(pipeline, groups, catalog, invocation.env)
        todo = groups_to_run(groups, catalog) if self._resume else groups
        submitting = {group.name for group in todo}
        for group in groups:
            if group.name not in submitting:
                self._logger.info("Skipping group '%s': its outputs exist", group.name)
        if not todo:
            self._logger.info("Nothing to submit: every group's outputs exist")
            return
        run_dir = invocation.project_path / config.log_dir / (run_id or _timestamp())
        jobs = _make_jobs(todo, run_dir, invocation, config, self._nodes_of(todo, catalog))
        if self._dry_run:
            _print_plan(jobs)
            _print_scripts(jobs)
            return
        self._submit(jobs)
        if not self._wait:
            ids = ",".join(job.job_id for job in jobs)
            self._logger.info(
                "Submitted %d jobs, not waiting. Follow them: squeue -j %s; logs: %s", len(jobs), ids, run_dir
            )
            return
        try:
            self._follow(jobs, config.poll_interval)
        except KeyboardInterrupt:
            self._logger.warning(
                "Stopped following; the jobs keep running. Cancel them with: scancel %s",
                " ".join(j.job_id for j in jobs),
            )
            raise

    def _nodes_of(self, groups: list[Group], catalog: CatalogProtocol) -> dict[str, list[str]]:
        """The nodes each group's job runs: with resume, a group whose inputs are unchanged skips finished nodes."""
        submitting = {group.name for group in groups}
        nodes = {}
        for group in groups:
            if self._resume and not submitting.intersection(group.dependencies):
                running = [n.name for n in nodes_to_run(group.nodes, finished_nodes(group, catalog), catalog)]
                skipped = [name for name in group.node_names if name not in running]
                if skipped:
                    self._logger.info(
                        "Group '%s' skips %d finished nodes: %s", group.name, len(skipped), ", ".join(skipped)
                    )
                nodes[group.name] = running
            else:
                nodes[group.name] = group.node_names
        return nodes

    def _submit(self, jobs: list[Job]) -> None:
        """Submit the jobs in dependency order; if one is refused, cancel those already submitted."""
        ids: dict[str, str] = {}
        for job in jobs:
            job.script_path.parent.mkdir(parents=True, exist_ok=True)
            job.script_path.write_text(job.script)
            try:
                job.job_id = sbatch.submit(job.script_path, [ids[name] for name in job.after])
            except sbatch.SlurmCommandError:
                if ids:
                    sbatch.cancel(ids.values())
                raise
            ids[job.group.name] = job.job_id
            after = f" after jobs {', '.join(ids[name] for name in job.after)}" if job.after else ""
            self._logger.info("Submitted %s%s; log: %s", job, after, job.log_path)

    def _follow(self, jobs: list[Job], poll_interval: float) -> None:
        """Report state changes until every job has ended; cancel what depends on a failed job."""
        shown: dict[str, str] = {}
        cancelled: set[str] = set()
        previous: dict[str, sbatch.JobStatus] = {}
        while True:
            status = self._poll(jobs, poll_interval)
            for job in jobs:
                if shown.get(job.job_id) != status[job.job_id].state:
                    shown[job.job_id] = status[job.job_id].state
                    self._logger.info("%s: %s", job, status[job.job_id].state)
            # A requeued job passes through PREEMPTED, NODE_FAIL or TIMEOUT on its way back to PENDING: an
            # end counts once two polls in a row report it.
            settled = {job_id for job_id, s in status.items() if s.finished and previous.get(job_id) == s}
            previous = status
            failed = {
                job.group.name for job in jobs if job.job_id in settled and status[job.job_id].state != sbatch.DONE
            }
            doomed = [
                job.job_id
                for job in _downstream(jobs, failed)
                if not status[job.job_id].finished and job.job_id not in cancelled
            ]
            if doomed:
                self._logger.warning("Cancelling jobs %s: a job they depend on failed", ", ".join(doomed))
                sbatch.cancel(doomed)
                cancelled.update(doomed)
            if len(settled) == len(jobs):
                break
            time.sleep(poll_interval)
        _report(jobs, status)
        self._logger.info("All %d SLURM jobs completed", len(jobs))

    def _poll(self, jobs: list[Job], poll_interval: float) -> dict[str, sbatch.JobStatus]:
        """Every job's status by id, retrying while sacct fails; jobs it does not list yet are pending."""
        failures = 0
        while True:
            try:
                found = sbatch.statuses(job.job_id for job in jobs)
                return {job.job_id: found.get(job.job_id, sbatch.JobStatus(sbatch.PENDING)) for job in jobs}
            except sbatch.SlurmCommandError as error:
                failures += 1
                if failures >= MAX_SACCT_FAILURES:
                    raise
                self._logger.warning("Cannot read job states yet: %s", error)
                time.sleep(poll_interval)


def _timestamp() -> str:
    """A run folder name for runs without a Kedro session id."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H.%M.%S")


def _refuse_unpersisted(pipeline: Pipeline, groups: list[Group], catalog: CatalogProtocol, env: str) -> None:
    """Raise, naming them, if datasets that pass between jobs would only live in memory."""
    crossings = unpersisted_crossings(pipeline, groups, catalog)
    if crossings:
        listed = "\n".join(f"  {name} ({hop})" for name, hop in crossings.items())
        raise ValueError(
            "SLURM jobs can only pass data through files, but these datasets would not be "
            f"persisted (MemoryDataset or another in-memory dataset):\n{listed}\n"
            f"Add them to the catalog of env '{env}' with a filepath on storage shared by the nodes."
        )


def _make_jobs(
    groups: list[Group],
    run_dir: Path,
    invocation: KedroInvocation,
    config: ClusterConfig,
    nodes: dict[str, list[str]],
) -> list[Job]:
    """One job per group, running ``nodes[group]``, with its batch script and the groups it must wait for."""
    package = kedro_project.PACKAGE_NAME or invocation.project_path.name
    submitted = {group.name for group in groups}
    jobs = []
    for index, group in enumerate(groups, start=1):
        job = Job(index, group, run_dir, nodes[group.name], after=[d for d in group.dependencies if d in submitted])
        job.options = {
            **config.sbatch_options(group.profile),
            **config.requeue_options(),
            "job_name": f"{package}.{_safe(group.name)}",
            "output": str(job.log_pattern),
            # A requeued job keeps its id, so its attempts share one log: append, do not truncate.
            "open_mode": "append",
            "chdir": str(invocation.project_path),
            # Off by default, SLURM would keep a job whose dependency failed pending forever.
            "kill_on_invalid_dep": "yes",
        }
        job.script = sbatch.render_script(
            job.options,
            config.setup,
            invocation.command(job.node_names),
            log=str(job.log_pattern),
            max_requeues=config.max_requeues,
        )
        jobs.append(job)
    return jobs


# The sbatch options the job plan shows, in this order.
PLAN_RESOURCES = ("partition", "gres", "cpus_per_task", "mem", "time")


def _print_plan(jobs: list[Job]) -> None:
    """The job plan: each job's resources, the jobs it waits for, and its nodes."""
    print(f"# Job plan: {len(jobs)} jobs, {sum(len(job.node_names) for job in jobs)} nodes")
    for job in jobs:
        resources = ", ".join(f"{key}={job.options[key]}" for key in PLAN_RESOURCES if job.options.get(key))
        after = f"; after {', '.join(job.after)}" if job.after else ""
        print(f"# {job.index:2d}. {job.group.name} [{resources}{after}]: {', '.join(job.node_names)}")


def _print_scripts(jobs: list[Job]) -> None:
    """Show what would be submitted: each job's dependencies and batch script."""
    for job in jobs:
        after = f", after {', '.join(job.after)}" if job.after else ""
        print(f"# ---- job {job.index}/{len(jobs)}: group '{job.group.name}'{after} -> {job.script_path}")
        print(job.script)


def _downstream(jobs: list[Job], sources: set[str]) -> list[Job]:
    """The jobs that depend, directly or not, on the ``sources`` groups (jobs are in dependency order)."""
    reached = set(sources)
    downstream = []
    for job in jobs:
        if reached.intersection(job.group.dependencies):
            reached.add(job.group.name)
            downstream.append(job)
    return downstream


def _report(jobs: list[Job], status: dict[str, sbatch.JobStatus]) -> None:
    """Raise with one line per job that did not complete: why, which node, and where its log is."""
    failed = {job.group.name for job in jobs if status[job.job_id].state != sbatch.DONE}
    if not failed:
        return
    knock_on = {job.group.name for job in _downstream(jobs, failed)}
    lines = []
    for job in jobs:
        if job.group.name in knock_on:
            lines.append(f"  {job}: {status[job.job_id].state}, as a job it depends on failed")
        elif job.group.name in failed:
            lines.append(f"  {job}: {_failure(job, status[job.job_id])}")
    raise SlurmJobsFailed("SLURM jobs did not complete:\n" + "\n".join(lines))


def _failure(job: Job, status: sbatch.JobStatus) -> str:
    """Why one job failed, in which node(s), and the path of its log."""
    failed = job_runner.marked_nodes(job.log_path, job_runner.FAILED)
    started = job_runner.marked_nodes(job.log_path, job_runner.STARTED)
    exhausted = job_runner.marked_nodes(job.log_path, job_runner.REQUEUES_EXHAUSTED)
    if failed:
        where = f"node {', '.join(failed)} failed"
    elif started:
        where = f"while running node {started[-1]}"
    else:
        where = f"before its nodes ran ({', '.join(job.node_names)})"
    if status.state == "TIMEOUT":
        why = f"killed by the time limit ({status.time_limit}) after {status.elapsed}"
    elif status.state == "OUT_OF_MEMORY":
        why = "killed for using more memory than it asked for"
    else:
        why = f"{status.state} (exit code {status.exit_code})"
    if exhausted:
        why += f", no requeue left ({exhausted[-1]})"
    return f"{why}; {where}; log: {job.log_path}"
