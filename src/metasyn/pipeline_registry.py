"""Project pipelines, built for the variants of the run's own configuration."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from metasyn.context import run_variants
from metasyn.pipelines import calibration, comparison, data_prep, finetune, synergy

PIPELINE_MODULES = {
    "data_prep": data_prep,
    "finetune": finetune,
    "calibration": calibration,
    "synergy": synergy,
    "comparison": comparison,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline, instantiated per variant of this run; ``__default__`` runs them all."""
    variants = run_variants()
    pipelines = {name: module.create_pipeline(variants) for name, module in PIPELINE_MODULES.items()}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
