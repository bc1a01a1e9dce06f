"""Kedro project settings."""

from importlib.resources import files

from metasyn.context import ProjectContext
from metasyn.hooks import CheckInputsHook, CheckModelsHook, CheckParametersHook
from metasyn.quiet import silence_third_party_warnings
from metasyn.run_record import RunRecordHook

silence_third_party_warnings()


def _package_file(name: str) -> str:
    """Path of a data file shipped in ``metasyn/resources`` (works from any project directory)."""
    return str(files("metasyn.resources").joinpath(name))


CONTEXT_CLASS = ProjectContext
# pluggy calls the last registered first. The checks refuse a run before its record is written: parameters
# first of all, then the inputs other pipelines make (cheap), then the models (reads their configs).
HOOKS = (RunRecordHook(), CheckModelsHook(), CheckInputsHook(), CheckParametersHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"package_file": _package_file},
    # Environments are overlays: conf/smoke and conf/slurm hold only the keys that differ from conf/base.
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}
