"""synergy pipeline: the synergistic core of every model, from attention-head activity to head ablation."""

from metasyn.pipelines.synergy.pipeline import create_pipeline

__all__ = ["create_pipeline"]
