"""The runner inside each SLURM job: Kedro's SequentialRunner that leaves in the job log which node started,
finished or failed, and that skips the nodes an earlier attempt of the same (requeued) job finished."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from metasyn.runners.plan import nodes_to_run

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

# Marker lines, printed (not logged, so no log format can wrap them) to stderr, i.e. the job log.
STARTED = "metasyn.runners: node started: "
FINISHED = "metasyn.runners: node finished: "
FAILED = "metasyn.runners: node failed: "
SKIPPED = "metasyn.runners: node skipped, finished in an earlier attempt of this job: "
# Written by the batch script (sbatch.render_script).
ATTEMPT = "metasyn.runners: attempt "
REQUEUED = "metasyn.runners: requeued: "
REQUEUES_EXHAUSTED = "metasyn.runners: no requeue left: "
# The batch script exports the job log's path in this variable.
LOG_VARIABLE = "METASYN_JOB_LOG"


def _mark(mark: str, node: Node) -> None:
    """Write a marker line for the node to the job log."""
    print(mark + node.name, file=sys.stderr, flush=True)


class _NodeMarker:
    """Hooks that leave the names of started, finished and failed nodes in the job log."""

    def __init__(self) -> None:
        self._unsaved: dict[str, set[str]] = {}

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Mark the node as started: if SLURM kills the job, the last one started is the culprit."""
        self._unsaved[node.name] = set(node.outputs)
        _mark(STARTED, node)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """A node without outputs has finished when it returns."""
        if not node.outputs:
            _mark(FINISHED, node)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        """A node has finished once its last output is saved (Kedro saves them after ``after_node_run``)."""
        unsaved = self._unsaved.get(node.name)
        if unsaved is not None and dataset_name in unsaved:
            unsaved.discard(dataset_name)
            if not unsaved:
                _mark(FINISHED, node)

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        """Mark the node as failed."""
        _mark(FAILED, node)


class JobRunner(SequentialRunner):
    """Runs a SLURM job's nodes in order, marking them in the job log; a requeued job skips finished nodes."""

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Drop the nodes an earlier attempt finished, register the markers, then run as SequentialRunner."""
        log = os.environ.get(LOG_VARIABLE)
        finished = set(marked_nodes(Path(log), FINISHED)) if log else set()
        if finished:
            running = nodes_to_run(pipeline.nodes, finished, catalog)
            for node in pipeline.nodes:
                if node not in running:
                    _mark(SKIPPED, node)
            pipeline = Pipeline(running)
        if hook_manager is not None:
            hook_manager.register(_NodeMarker())
        super()._run(pipeline, catalog, hook_manager, run_id)


def marked_nodes(log: Path, mark: str) -> list[str]:
    """What follows ``mark`` on the job log's lines that start with it (a node's name for STARTED, FINISHED,
    FAILED, ...; the reason for REQUEUES_EXHAUSTED), in order; none if no log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line.removeprefix(mark).strip() for line in lines if line.startswith(mark)]
