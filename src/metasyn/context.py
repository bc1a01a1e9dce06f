"""The project's Kedro context: it hands the run's own configuration to what is built outside the catalog.

Kedro builds the pipelines (``register_pipelines``) without telling them which environment runs, and a
second ``OmegaConfigLoader`` created to find out re-binds OmegaConf's process-wide ``globals`` resolver to
its own environment, so every ``${globals:...}`` resolved afterwards takes that environment's values (a
``--env slurm`` run then measured the embedded model). Instead, the loader Kedro created for the session is
kept when the context is created, which ``kedro run``, ``kedro viz`` and ``%load_ext kedro.ipython`` all do
before they build the pipelines. A context class rather than a hook, because kedro-viz disables hooks.
"""

from __future__ import annotations

from kedro.config import AbstractConfigLoader
from kedro.framework.context import KedroContext

from metasyn.pipelines.variants import Variants

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


class ProjectContext(KedroContext):
    """Kedro's context, which also makes its config loader the one the pipelines and runners read."""

    def __init__(self, *args, **kwargs) -> None:
        global _run_config_loader, _run_variants
        super().__init__(*args, **kwargs)
        from kedro.framework.project import PACKAGE_NAME, pipelines

        parameters = self.config_loader["parameters"]
        # A bad variant list is refused here, before anything is built or run. A project without one (the
        # SLURM runner's test project) uses this context only for its config loader.
        variants = None if parameters.get("variants") is None else Variants.from_parameters(parameters)
        # ``pipelines`` is built once per process; a later session (a test, a notebook reload) with another
        # variant list must not reuse pipelines built for the first one.
        if _run_variants is not None and variants != _run_variants and PACKAGE_NAME:
            pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")
        _run_config_loader, _run_variants = self.config_loader, variants
