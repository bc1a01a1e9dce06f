"""The smoke pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from smoke.pipeline import leaky_pipeline, smoke_pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """``__default__``: the smoke pipeline; ``leaky``: one whose jobs would share a MemoryDataset."""
    return {"__default__": smoke_pipeline(), "leaky": leaky_pipeline()}
