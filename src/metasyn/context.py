"""The project's Kedro context: it hands the run's own configuration to what is built outside the catalog.

Kedro builds the pipelines (``register_pipelines``) without telling them which environment runs, and a
second ``OmegaConfigLoader`` created to find out re-binds OmegaConf's process-wide ``globals`` resolver to
its own environment, so every ``${globals:...}`` resolved afterwards takes that environment's values (a
``--env slurm`` run then measured the embedded model). Instead, the loader Kedro created for the session is
kept when the context is created, which ``kedro run``, ``kedro viz`` and ``%load_ext kedro.ipython`` all do
before they build the pipelines. A context class rather than a hook, because kedro-viz disables hooks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from kedro.config import AbstractConfigLoader
from kedro.framework.context import KedroContext

from metasyn.pipelines.variants import Variants, VariantsError

if TYPE_CHECKING:
    from metasyn.parameters import Problem

_run_config_loader: AbstractConfigLoader | None = None
# The variants of the last context created (None where its project declares none): what ``pipelines``, built
# lazily and once per process, is built for.
_run_variants: Variants | None = None


class NoRunConfigurationError(RuntimeError):
    """Pipelines or a runner were asked for the run's configuration before Kedro created a context."""


def run_config_loader() -> AbstractConfigLoader:
    """The config loader of the Kedro session in progress (the one Kedro created at start-up)."""
    if _run_config_loader is None:
        raise NoRunConfigurationError(
            "metasyn's pipelines are built from the run's configuration, and no Kedro context has been created "
            "yet. Build them through Kedro (`kedro run`, `kedro viz`, `%load_ext kedro.ipython`) or call "
            "`KedroSession.create(...).load_context()` first; a project that uses metasyn's pipelines or the "
            "SlurmRunner must set `CONTEXT_CLASS = metasyn.context.ProjectContext` in its settings.py."
        )
    return _run_config_loader


def run_variants() -> Variants:
    """The variants of the run in progress, validated."""
    loader = run_config_loader()
    if _run_variants is not None:
        return _run_variants
    # The run's project declares no variant list: refuse it with the validator's message.
    return Variants.from_parameters(loader["parameters"])


class RunRefused(click.ClickException, ValueError):
    """A run stopped before any work, with a message that says what is wrong and how to fix it.

    A ``click.ClickException``, so that ``kedro run`` prints only the message (``Error: ...``), not a
    traceback through Kedro's internals.
    """


class ParametersError(RunRefused):
    """The run's parameters have problems: the message lists each, with the file that sets its key."""


def refuse_bad_parameters(parameters: Mapping[str, Any], loader: AbstractConfigLoader | None) -> None:
    """Raise ``ParametersError`` listing every problem of ``parameters`` (``metasyn.parameters``), if any."""
    # Imported here: the typed models import peft, TRL and torch (seconds), which a project that uses only this
    # context's config loader (the SLURM runner's test project) does not otherwise load.
    from metasyn.parameters import parameter_problems

    if problems := parameter_problems(parameters):
        raise ParametersError(parameters_message(problems, loader))


def parameters_message(problems: Sequence[Problem], loader: AbstractConfigLoader | None) -> str:
    """One line per problem, each ending with where its key is set (when ``loader`` tells where to look)."""
    sources = list(_parameter_sources(loader)) if loader is not None else []
    lines = []
    for problem in problems:
        where = _where(problem.key, sources)
        lines.append(f"- {problem.message.rstrip('.')}" + (f" ({where})" if where else ""))
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return f"The run's parameters have {count}; nothing was run. Fix them and run again:\n" + "\n".join(lines)


_GLOBALS_REFERENCE = re.compile(r"^\$\{globals:([\w.]+)\}$")


def _parameter_sources(loader: AbstractConfigLoader) -> Iterator[tuple[str, Mapping]]:
    """(label, raw tree) of what sets the parameters, the highest precedence first: --params, the run's
    environment, the base environment. A packaged or remote conf_source yields only --params."""
    yield "--params", loader.runtime_params or {}
    root = Path(str(loader.conf_source))
    envs = [getattr(loader, "env", None) or getattr(loader, "default_run_env", ""), getattr(loader, "base_env", "base")]
    for env in dict.fromkeys(env for env in envs if env):
        for path in sorted((root / env).glob("**/parameters*.y*ml")) if root.is_dir() else []:
            label = os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
            yield label, yaml.safe_load(path.read_text()) or {}


def _where(key: str, sources: list[tuple[str, Mapping]]) -> str | None:
    """The source that sets the longest part of ``key`` (the first such, by precedence), and any globals key
    that value comes from."""
    best, best_depth = None, 0
    for label, tree in sources:
        node, depth, reference = tree, 0, None
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node, depth = node[part], depth + 1
            if isinstance(node, str) and (match := _GLOBALS_REFERENCE.match(node)):
                reference = match.group(1)
        if depth > best_depth:
            best, best_depth = (label if reference is None else f"{label}, via globals {reference}"), depth
    return best


class ProjectContext(KedroContext):
    """Kedro's context, which also makes its config loader the one the pipelines and runners read."""

    def __init__(self, *args, **kwargs) -> None:
        global _run_config_loader, _run_variants
        super().__init__(*args, **kwargs)
        from kedro.framework.project import PACKAGE_NAME, pipelines

        parameters = self.config_loader["parameters"]
        # A bad variant list is refused here, before anything is built or run, together with every other
        # parameter problem (metasyn.hooks.CheckParametersHook reports them when the variant list is sound). A
        # project without one (the SLURM runner's test project) uses this context only for its config loader.
        try:
            variants = None if parameters.get("variants") is None else Variants.from_parameters(parameters)
        except VariantsError as error:
            try:
                refuse_bad_parameters(parameters, self.config_loader)
            except ParametersError as problems:
                raise VariantsError(str(problems)) from error
            raise
        # ``pipelines`` is built once per process; a later session (a test, a notebook reload) with another
        # variant list must not reuse pipelines built for the first one.
        if _run_variants is not None and variants != _run_variants and PACKAGE_NAME:
            pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")
        _run_config_loader, _run_variants = self.config_loader, variants
