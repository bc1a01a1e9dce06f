"""Split a Kedro pipeline into SLURM jobs and decide which of them must run."""

from __future__ import annotations

import graphlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from metasyn.run_record import RUN_ID_DATASET

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

# Kedro tags allow only letters, digits, "-", "_" and ".", so "slurm:gpu" cannot be a tag.
PROFILE_TAG_PREFIX = "slurm."


@dataclass(frozen=True)
class Group:
    """Nodes that run together as one SLURM job, after the groups it depends on."""

    name: str
    nodes: tuple[Node, ...]
    dependencies: tuple[str, ...]

    @property
    def node_names(self) -> list[str]:
        """Names of the group's nodes, in the pipeline's topological order."""
        return [node.name for node in self.nodes]

    @property
    def profile(self) -> str | None:
        """The resource profile its nodes ask for with a ``slurm.<profile>`` tag, if any."""
        wanted = {
            tag.removeprefix(PROFILE_TAG_PREFIX): node.name
            for node in self.nodes
            for tag in node.tags
            if tag.startswith(PROFILE_TAG_PREFIX)
        }
        if len(wanted) > 1:
            asks = ", ".join(f"'{node}' wants '{p}'" for p, node in sorted(wanted.items()))
            raise ValueError(
                f"Group '{self.name}' would be one SLURM job but its nodes ask for different "
                f"resource profiles ({asks}); tag them alike or split the namespace."
            )
        return next(iter(wanted), None)


def plan_groups(pipeline: Pipeline, group_by: str) -> list[Group]:
    """Group the pipeline's nodes (``namespace``: by top-level namespace, ``none``: one per node)."""
    nodes = {node.name: node for node in pipeline.nodes}
    grouped = {g.name: g for g in pipeline.group_nodes_by(group_by)}
    order = graphlib.TopologicalSorter({name: g.dependencies for name, g in grouped.items()})
    try:
        names = list(order.static_order())
    except graphlib.CycleError as error:
        raise ValueError(
            f"Groups {error.args[1]} depend on each other in a cycle, so they cannot be "
            "SLURM jobs chained by dependencies; use group_by: none or fix the namespaces."
        ) from error
    return [
        Group(
            name=name,
            nodes=tuple(nodes[n] for n in grouped[name].nodes),
            dependencies=tuple(grouped[name].dependencies),
        )
        for name in names
    ]


def _ancestors(groups: Iterable[Group]) -> dict[str, set[str]]:
    """Every group's direct and indirect dependencies (``groups`` in dependency order)."""
    ancestors: dict[str, set[str]] = {}
    for group in groups:
        ancestors[group.name] = set(group.dependencies).union(*(ancestors[d] for d in group.dependencies))
    return ancestors


def _host(light: Group, groups: list[Group]) -> Group | None:
    """The first group whose job can also run ``light``'s nodes without making any job wait longer.

    The host must be a neighbour (one depends on the other, or they share a dependency); it must already wait
    for everything ``light`` needs; no other group may lie between them; and every other group that needs
    ``light`` must already wait for the host.
    """
    ancestors = _ancestors(groups)
    dependents = [g.name for g in groups if light.name in g.dependencies]
    for host in groups:
        related = (
            host.name in light.dependencies
            or light.name in host.dependencies
            or set(light.dependencies) & set(host.dependencies)
        )
        if (
            host.name != light.name
            and related
            and all(d == host.name or d in ancestors[host.name] for d in light.dependencies)
            and not any(light.name in ancestors[d] for d in host.dependencies)
            and all(host.name in ancestors[d] for d in dependents if d != host.name)
        ):
            return host
    return None


def merge_light_groups(groups: list[Group]) -> list[Group]:
    """Fold each group whose nodes ask for no resource profile into a neighbour's job, where it adds no wait.

    A prompt selection or a plot takes seconds; as a job of its own it would wait in the queue for a default
    allocation. Repeated until no group moves (a host may itself become light enough to move).
    """
    while True:
        for light in groups:
            if light.profile is not None or (host := _host(light, groups)) is None:
                continue
            upstream = host.name in _ancestors(groups)[light.name]
            merged = replace(
                host,
                nodes=host.nodes + light.nodes if upstream else light.nodes + host.nodes,
                dependencies=tuple(sorted(set(host.dependencies).union(light.dependencies) - {host.name, light.name})),
            )
            groups = [
                replace(g, dependencies=tuple(sorted({host.name if d == light.name else d for d in g.dependencies})))
                for g in (merged if g.name == host.name else g for g in groups)
                if g.name != light.name
            ]
            break
        else:
            return groups


def _is_persisted(catalog: CatalogProtocol, dataset: str) -> bool:
    """Whether the dataset is saved somewhere another job can load it from."""
    # Kedro's own marker of datasets that live in memory only (MemoryDataset and kin).
    found = catalog.get(dataset, fallback_to_runtime_pattern=True)
    return found is not None and not found._EPHEMERAL


def unpersisted_crossings(pipeline: Pipeline, groups: list[Group], catalog: CatalogProtocol) -> dict[str, str]:
    """Datasets a job reads from another job or from outside the pipeline that are not persisted.

    Returned as ``name: 'from -> to'``. Parameters and the run id are exempt: every job's own session provides
    them.
    """
    group_of = {node.name: group.name for group in groups for node in group.nodes}
    producer = {out: group_of[node.name] for node in pipeline.nodes for out in node.outputs}
    crossings = {
        dataset: f"{producer.get(dataset, 'pipeline input')} -> {group_of[node.name]}"
        for node in pipeline.nodes
        for dataset in node.inputs
        if producer.get(dataset) != group_of[node.name] and not _is_provided_by_session(dataset)
    }
    return {name: hop for name, hop in sorted(crossings.items()) if not _is_persisted(catalog, name)}


def _is_provided_by_session(dataset: str) -> bool:
    """Whether the input is a parameter (``params:...`` or ``parameters``) or the run id."""
    return dataset in {"parameters", RUN_ID_DATASET} or dataset.startswith("params:")


def _is_complete(group: Group, catalog: CatalogProtocol) -> bool:
    """Whether the group has persisted outputs and all of them exist."""
    outputs = [out for node in group.nodes for out in node.outputs if _is_persisted(catalog, out)]
    return bool(outputs) and all(catalog.exists(out) for out in outputs)


def _outputs_exist(node: Node, catalog: CatalogProtocol) -> bool:
    """Whether every persisted output of the node exists (true of a node whose outputs all live in memory)."""
    return all(catalog.exists(out) for out in node.outputs if _is_persisted(catalog, out))


def nodes_to_run(nodes: Iterable[Node], finished: Collection[str], catalog: CatalogProtocol) -> list[Node]:
    """The nodes that must run, of ``nodes`` (in dependency order) when those named ``finished`` are done.

    A finished node runs again only if one of its persisted outputs is missing, or if a node that runs needs
    one of its outputs that lived in memory. Kedro's ``--only-missing-outputs`` decides by existing files
    alone, which would keep outputs that an older run left and that this run's upstream replaces.
    """
    nodes = list(nodes)
    must_run: list[Node] = []
    needed: set[str] = set()
    for node in reversed(nodes):
        done = node.name in finished and node.outputs and _outputs_exist(node, catalog)
        if not done or any(out in needed and not _is_persisted(catalog, out) for out in node.outputs):
            must_run.append(node)
            needed.update(node.inputs)
    return must_run[::-1]


def finished_nodes(group: Group, catalog: CatalogProtocol) -> set[str]:
    """The group's nodes whose persisted outputs all exist (nodes with outputs in memory only included)."""
    return {node.name for node in group.nodes if _outputs_exist(node, catalog)}


def groups_to_run(groups: list[Group], catalog: CatalogProtocol) -> list[Group]:
    """The groups with missing outputs, and every group downstream of one (their inputs change)."""
    rerun: set[str] = set()
    for group in groups:
        if rerun.intersection(group.dependencies) or not _is_complete(group, catalog):
            rerun.add(group.name)
    return [group for group in groups if group.name in rerun]
