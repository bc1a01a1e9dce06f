"""Custom Kedro datasets: torch tensors as safetensors, and model directories."""

from metasyn.datasets.model_dataset import ModelDataset
from metasyn.datasets.tensor_dataset import TensorDataset

__all__ = ["ModelDataset", "TensorDataset"]
