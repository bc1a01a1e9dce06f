"""The project's pipelines, one folder each, registered in ``metasyn.pipeline_registry``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, pipeline

# Node tags that pick a SLURM resource profile (conf/slurm/slurm.yml); Kedro tags allow no ":".
GPU_TAG = "slurm.gpu"
CPU_LARGE_TAG = "slurm.cpu_large"


def bind(func: Callable, **values: object) -> Callable:
    """``func`` with arguments fixed by the pipeline (a model's name, the variant list), keeping its name."""
    return update_wrapper(partial(func, **values), func)


def per_model(
    template_for: Callable[[str], Pipeline], models: Iterable[str], shared_inputs: Iterable[str] = ()
) -> Pipeline:
    """``template_for(model)`` once per model, in the model's namespace (``<model>.<dataset>``).

    ``shared_inputs`` and every parameter stay outside the namespaces: all models read the same ones.
    """
    instances = []
    for model in models:
        template = template_for(model)
        parameters = {name for name in template.all_inputs() if name.startswith("params:")}
        instances.append(pipeline(template, namespace=model, inputs=set(shared_inputs), parameters=parameters))
    return sum(instances, Pipeline([]))
