"""A thin wrapper over the SLURM commands the runner needs: sbatch, sacct and scancel."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def render_script(options: Mapping[str, Any], setup: Sequence[str], command: Sequence[str]) -> str:
    """A batch script: ``#SBATCH`` options, the setup lines, then ``command`` in place of the shell."""
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {shlex.quote(flag)}" for flag in option_flags(options)),
        "set -e",
        *setup,
        # exec: SLURM's signals (time limit, scancel) then reach kedro itself.
        "exec " + shlex.join(command),
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
