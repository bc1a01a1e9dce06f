"""The layout holds: library packages depend one way, pipelines stay apart, every node lives in nodes.py."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import metasyn
from metasyn.pipeline_registry import PIPELINE_MODULES
from tests.conftest import declared_variants

PACKAGE_ROOT = Path(metasyn.__file__).parent
# Library packages, lowest first: each may import only packages before it in this list.
LIBRARY_LAYERS = ["atomic", "questions", "lm", "metacognition", "synergy", "comparison"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every ``metasyn.*`` module a file imports; ``from package import submodule`` counts as the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("metasyn")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("metasyn"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}
    return {module: _imports(path, set(paths)) for module, path in paths.items()}


def _pipeline_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "pipelines" and parts[2] in PIPELINE_MODULES else None


def test_the_import_walk_sees_the_package():
    graph = import_graph()
    assert "metasyn.pipelines.synergy.nodes" in graph
    assert "metasyn.synergy" in graph["metasyn.pipelines.synergy.nodes"]


def test_no_library_module_imports_a_pipeline():
    for module, imported in import_graph().items():
        if module.startswith("metasyn.pipelines") or module == "metasyn.pipeline_registry":
            continue
        assert not {name for name in imported if _pipeline_of(name)}, module


def test_no_pipeline_imports_another_pipeline():
    for module, imported in import_graph().items():
        own = _pipeline_of(module)
        if own:
            others = {_pipeline_of(name) for name in imported} - {None, own}
            assert not others, f"{module} imports pipelines {others}"


def test_library_packages_depend_downward_only():
    for module, imported in import_graph().items():
        package = module.split(".")[1] if "." in module else None
        if package not in LIBRARY_LAYERS:
            continue
        allowed = set(LIBRARY_LAYERS[: LIBRARY_LAYERS.index(package) + 1])
        for name in imported:
            target = name.split(".")[1] if "." in name else None
            assert target in allowed, f"{module} imports {name}: {package} may use only {sorted(allowed)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done or module not in graph:
            return None
        visiting.append(module)
        for name in sorted(graph[module]):
            if cycle := visit(name):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module))), None)


def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_in_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("name", sorted(PIPELINE_MODULES))
def test_every_node_function_is_defined_in_its_pipelines_nodes_module(name: str):
    pipeline = PIPELINE_MODULES[name].create_pipeline(declared_variants())
    assert pipeline.nodes
    for node in pipeline.nodes:
        func = node.func.func if isinstance(node.func, functools.partial) else node.func
        assert func.__module__ == f"metasyn.pipelines.{name}.nodes", f"{node.name}: {func.__module__}.{func.__name__}"
