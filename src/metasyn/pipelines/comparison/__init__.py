"""comparison: base, fine-tuned and control models side by side, and the run report."""

from metasyn.pipelines.comparison.pipeline import create_pipeline

__all__ = ["create_pipeline"]
