"""Project hooks: every model the run reads is checked before any node runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kedro.framework.hooks import hook_impl

from metasyn.datasets import ModelDataset
from metasyn.lm.answers import check_matcher


def _matcher_settings(key: str, value: Any) -> Iterator[Any]:
    """The answer-matcher settings in a parameter: the parameter itself if its key is ``matcher``, else any inside."""
    if key.rsplit(".", 1)[-1] == "matcher":
        yield value
    elif isinstance(value, dict):
        for inner_key, inner_value in value.items():
            yield from _matcher_settings(inner_key, inner_value)


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
