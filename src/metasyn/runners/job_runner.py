"""The runner inside each SLURM job: Kedro's SequentialRunner that names the node that failed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kedro.framework.hooks import hook_impl
from kedro.runner import SequentialRunner

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

STARTED = "metasyn.runners: node started: "
FAILED = "metasyn.runners: node failed: "


def _mark(mark: str, node: Node) -> None:
    """Write a marker line to stderr, i.e. the job log; printed, not logged, so no format can wrap it."""
    print(mark + node.name, file=sys.stderr, flush=True)


class _NodeMarker:
    """Hooks that leave the names of started and failed nodes in the job log."""

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Mark the node as started: if SLURM kills the job, the last one started is the culprit."""
        _mark(STARTED, node)

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        """Mark the node as failed."""
        _mark(FAILED, node)


class JobRunner(SequentialRunner):
    """Runs a SLURM job's nodes in order, leaving in the job log which node started and which failed."""

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Register the node markers on this run's hooks, then run as SequentialRunner does."""
        if hook_manager is not None:
            hook_manager.register(_NodeMarker())
        super()._run(pipeline, catalog, hook_manager, run_id)


def marked_nodes(log: Path, mark: str) -> list[str]:
    """The nodes a job log marks with ``mark`` (STARTED or FAILED), in order; none if no log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line.removeprefix(mark).strip() for line in lines if line.startswith(mark)]
