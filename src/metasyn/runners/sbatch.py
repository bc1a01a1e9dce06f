"""A thin wrapper over the SLURM commands the runner needs: sbatch, sacct and scancel."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metasyn.runners import job_runner

# sacct states after which a job will not run again (see `man sacct`, JOB STATE CODES).
DONE = "COMPLETED"
FAILED = frozenset(
    {"FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
)
PENDING = "PENDING"


class SlurmCommandError(RuntimeError):
    """A SLURM command failed or could not be found."""


@dataclass(frozen=True)
class JobStatus:
    """One job's accounting record, as sacct reports it."""

    state: str
    exit_code: str = ""
    elapsed: str = ""
    time_limit: str = ""

    @property
    def finished(self) -> bool:
        """Whether the job has ended, well or not."""
        return self.state == DONE or self.state in FAILED


def option_flags(options: Mapping[str, Any]) -> list[str]:
    """``{"cpus_per_task": 4, "exclusive": True, "qos": None}`` -> ``["--cpus-per-task=4", "--exclusive"]``."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not None and value is not False:
            flags.append(f"{flag}={value}")
    return flags


def render_script(
    options: Mapping[str, Any], setup: Sequence[str], command: Sequence[str], *, log: str, max_requeues: int
) -> str:
    """A batch script: ``#SBATCH`` options, the setup lines, then ``command``, requeued near the time limit.

    ``log`` is the job's log path as sbatch's ``--output`` names it (``%j``: the job id): the job runner reads
    in it which nodes an earlier attempt of the same job finished. The job is allowed ``max_requeues`` requeues in all, whether
    asked for by its own trap (the ``USR1`` that ``--signal`` sends before the time limit) or by SLURM
    (preemption, node failure); SLURM counts them in ``SLURM_RESTART_COUNT``.
    """
    log_prefix, log_suffix = log.split("%j")
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {shlex.quote(flag)}" for flag in option_flags(options)),
        "set -e",
        *setup,
        f'export {job_runner.LOG_VARIABLE}={shlex.quote(log_prefix)}"$SLURM_JOB_ID"{shlex.quote(log_suffix)}',
        "attempt=$((${SLURM_RESTART_COUNT:-0} + 1))",
        f'echo "{job_runner.ATTEMPT}$attempt of at most {max_requeues + 1}" >&2',
        f"if ((attempt > {max_requeues + 1})); then",
        f'  echo "{job_runner.REQUEUES_EXHAUSTED}requeued $((attempt - 1)) times, max_requeues is {max_requeues}" >&2',
        "  exit 1",
        "fi",
        "requeue_before_time_limit() {",
        f"  if ((attempt <= {max_requeues})); then",
        f'    echo "{job_runner.REQUEUED}near the time limit" >&2',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "  else",
        f'    echo "{job_runner.REQUEUES_EXHAUSTED}near the time limit, max_requeues ({max_requeues}) used up" >&2',
        "  fi",
        "}",
        "trap requeue_before_time_limit USR1",
        # bash runs a trap only between commands: kedro goes to the background and the shell waits for it,
        # again after each trap, then exits with kedro's status. SLURM signals every process of the job, so a
        # time limit or scancel still reaches kedro.
        "set +e",
        shlex.join(command) + " &",
        "kedro_pid=$!",
        'while true; do wait "$kedro_pid"; status=$?; kill -0 "$kedro_pid" 2>/dev/null || exit "$status"; done',
    ]
    return "\n".join(lines) + "\n"


def _call(args: Sequence[str]) -> str:
    """Run a SLURM command and return its stdout, raising with its stderr if it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise SlurmCommandError(f"'{args[0]}' not found: is this a SLURM login node?") from error
    if done.returncode != 0:
        raise SlurmCommandError(f"{shlex.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def submit(script: Path, after: Sequence[str] = ()) -> str:
    """Submit a batch script to start once the jobs ``after`` have completed; return its job id."""
    args = ["sbatch", "--parsable"]
    if after:
        args.append("--dependency=afterok:" + ":".join(after))
    # --parsable prints "jobid" or "jobid;cluster".
    return _call([*args, str(script)]).strip().split(";")[0]


def statuses(job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """The accounting records of the jobs; a job that sacct does not list yet is left out."""
    out = _call(
        [
            "sacct",
            "--allocations",
            "--noheader",
            "--parsable2",
            "--format=JobID,State,ExitCode,Elapsed,Timelimit",
            "--jobs=" + ",".join(job_ids),
        ]
    )
    records = {}
    for line in out.splitlines():
        job_id, state, exit_code, elapsed, time_limit = line.split("|")
        # "CANCELLED by 1000" -> "CANCELLED"
        records[job_id] = JobStatus(state.split()[0], exit_code, elapsed, time_limit)
    return records


def cancel(job_ids: Iterable[str]) -> None:
    """Cancel the jobs."""
    _call(["scancel", *job_ids])
