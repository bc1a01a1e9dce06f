"""Custom Kedro datasets: torch tensors as safetensors, model directories, and partitions saved so far."""

from metasyn.datasets.model_dataset import ModelDataset
from metasyn.datasets.saved_partitions_dataset import SavedPartitionsDataset
from metasyn.datasets.tensor_dataset import TensorDataset

__all__ = ["ModelDataset", "SavedPartitionsDataset", "TensorDataset"]
