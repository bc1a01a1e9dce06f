"""The project's pipelines, one folder each, registered in ``metasyn.pipeline_registry``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper

# Node tags that pick a SLURM resource profile (conf/slurm/slurm.yml); Kedro tags allow no ":".
GPU_TAG = "slurm.gpu"
CPU_LARGE_TAG = "slurm.cpu_large"


def bind(func: Callable, **values: object) -> Callable:
    """``func`` with arguments fixed by the pipeline (a model's name, the variant list), keeping its name."""
    return update_wrapper(partial(func, **values), func)
