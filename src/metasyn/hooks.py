"""Project hooks: every model the run reads is checked before any node runs."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from metasyn.datasets import ModelDataset


class CheckModelsHook:
    """Before any node runs, every model the run reads from a spec must be loadable (config found)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        for name in sorted(pipeline.inputs()):
            dataset = catalog.get(name) if not name.startswith("params:") else None
            if isinstance(dataset, ModelDataset):
                dataset.check_available()
