"""data_prep: consistency-based confidence targets and the fine-tuning dataset."""

from metasyn.pipelines.data_prep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
