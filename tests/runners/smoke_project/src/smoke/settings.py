"""Kedro settings: the defaults, and the context through which the SlurmRunner reads the run's configuration."""

from metasyn.context import ProjectContext

CONTEXT_CLASS = ProjectContext
