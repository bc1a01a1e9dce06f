"""The model variants declared in ``conf/base/parameters.yml``, for building namespaced pipelines.

Pipelines are built before Kedro loads configuration, so the variant list is read here, once, from the
base environment.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from kedro.config import OmegaConfigLoader

CONF_SOURCE = Path(__file__).resolve().parents[2] / "conf"


@cache
def _variants() -> dict:
    loader = OmegaConfigLoader(str(CONF_SOURCE), base_env="base", default_run_env="base")
    return loader["parameters"]["variants"]


def finetuned_names(variants: dict) -> list[str]:
    """Fine-tuned variant names in a ``variants`` parameter block (as nodes receive it)."""
    return list(variants["finetuned"])


def finetuned_variants() -> list[str]:
    """Names of the fine-tuned variants (each a namespace of the finetune pipeline)."""
    return finetuned_names(_variants())


def evaluated_models() -> list[str]:
    """Models that calibration measures: the base model and every fine-tune."""
    return ["base", *finetuned_variants()]


def synergy_models() -> list[str]:
    """Models that synergy measures: the evaluated models and the untrained baselines."""
    return [*evaluated_models(), *_variants()["baselines"]]
