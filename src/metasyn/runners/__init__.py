"""Kedro runners for running the project's pipelines on a SLURM cluster."""

from metasyn.runners.job_runner import JobRunner
from metasyn.runners.slurm import SlurmRunner

__all__ = ["JobRunner", "SlurmRunner"]
