"""Project hooks: before any node runs, the run's parameters are checked, every model the run reads is checked,
and every input it needs from another pipeline must exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro_datasets.partitions import PartitionedDataset

from metasyn.context import RunRefused, refuse_bad_parameters
from metasyn.datasets import ModelDataset
from metasyn.lm.answers import check_matcher


def _matcher_settings(key: str, value: Any) -> Iterator[Any]:
    """The answer-matcher settings in a parameter: the parameter itself if its key is ``matcher``, else any inside."""
    if key.rsplit(".", 1)[-1] == "matcher":
        yield value
    elif isinstance(value, dict):
        for inner_key, inner_value in value.items():
            yield from _matcher_settings(inner_key, inner_value)


class CheckParametersHook:
    """Before anything else, the whole parameter tree must pass its typed models (``metasyn.parameters``).

    Every environment, every pipeline: a ``count: -5`` or a ``targets: shuffle`` stops the run with one
    message that lists every problem and the file that sets each key, before any model is loaded.
    """

    def __init__(self) -> None:
        self._config_loader = None

    @hook_impl
    def after_context_created(self, context) -> None:
        # The loader knows where the configuration lives, so each problem can name the file that sets its key.
        self._config_loader = context.config_loader

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        refuse_bad_parameters(catalog.load("parameters"), self._config_loader)


class CheckModelsHook:
    """Before any node runs, every model the run reads must be loadable (config found).

    That is each language model read from a spec, and the model of each answer matcher that the run's
    parameters choose (any parameter called ``matcher``): a missing NLI classifier stops the run before any
    sampling, not after it.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:"):
                for settings in _matcher_settings(name.removeprefix("params:"), catalog.load(name)):
                    check_matcher(settings)
            elif isinstance(dataset := catalog.get(name), ModelDataset):
                dataset.check_available()


def _namespace(node_name: str) -> str | None:
    """The top-level namespace of a node name (``metacog`` of ``metacog.train_adapter``), None outside one."""
    return node_name.split(".", 1)[0] if "." in node_name else None


def missing_inputs_message(
    missing: dict[str, list[str]], runnable_namespaces: list[str], blocked_namespaces: list[str]
) -> str:
    """One paragraph: which inputs are missing, which pipelines make them, and what to run instead."""
    listed = "; ".join(
        f"{name} (made by {' or '.join(makers) if makers else 'no registered pipeline'})"
        for name, makers in sorted(missing.items())
    )
    makers = sorted({maker for makers in missing.values() for maker in makers})
    advice = f"Run `kedro run --pipelines {','.join(makers)}` first" if makers else "Provide them in the catalog"
    if runnable_namespaces and blocked_namespaces:
        advice += f", or run only the namespaces whose inputs exist: `--namespaces {','.join(runnable_namespaces)}`"
    return f"This run needs inputs that do not exist yet: {listed}. {advice}."


class MissingInputsError(RunRefused):
    """Inputs that another pipeline makes do not exist yet; the message says which command makes them."""


class CheckInputsHook:
    """Before any node runs, every input the run reads from outside it must exist (written by an earlier run).

    A fresh ``kedro run --pipeline synergy`` would otherwise load the base model, start writing, and fail
    minutes later on ``metacog.model``; here it stops at once, naming the pipelines that make what is missing.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        from kedro.framework.project import pipelines

        needed = sorted(name for name in pipeline.inputs() if not name.startswith("params:") and name != "parameters")
        # A partitioned input is a resume point (what an earlier, interrupted run saved): empty is valid.
        missing = [
            name
            for name in needed
            if not isinstance(catalog.get(name), PartitionedDataset) and not catalog.exists(name)
        ]
        if not missing:
            return
        makers = {
            name: sorted(
                registered
                for registered, candidate in pipelines.items()
                if registered != "__default__" and name in candidate.all_outputs()
            )
            for name in missing
        }
        blocked = {_namespace(node.name) for node in pipeline.nodes if set(node.inputs) & set(missing)}
        namespaces = sorted({_namespace(node.name) for node in pipeline.nodes} - {None})
        runnable = [namespace for namespace in namespaces if namespace not in blocked]
        raise MissingInputsError(missing_inputs_message(makers, runnable, sorted(blocked - {None})))
