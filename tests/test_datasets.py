"""Custom catalog datasets: save/load round trips."""

import pytest
import torch
from kedro.io import DatasetError
from transformers import LlamaForCausalLM

from metasyn.datasets import ModelDataset, TensorDataset
from metasyn.lm.models import LanguageModel
from tests.conftest import tiny_llama_config


def test_tensor_dataset_round_trip(tmp_path):
    dataset = TensorDataset(filepath=str(tmp_path / "nested" / "activity.safetensors"))
    assert not dataset.exists()
    data = {
        "head_output_norms": torch.randn(3, 8, 5, dtype=torch.float64),
        "token_ids": torch.arange(12).view(3, 4).t(),
    }
    dataset.save(data)
    loaded = dataset.load()
    assert dataset.exists()
    assert loaded.keys() == data.keys()
    for name in data:
        assert torch.equal(loaded[name], data[name]) and loaded[name].dtype == data[name].dtype


def test_tensor_dataset_rejects_non_tensors(tmp_path):
    with pytest.raises(DatasetError, match="dict of torch tensors"):
        TensorDataset(filepath=str(tmp_path / "x.safetensors")).save({"a": [1, 2]})


def test_model_dataset_round_trip(tmp_path, embedded_lm):
    config = tiny_llama_config(len(embedded_lm.tokenizer))
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    dataset = ModelDataset(path=str(tmp_path / "merged_model"), device="cpu", dtype="float32")
    assert not dataset.exists()
    dataset.save(LanguageModel(model, embedded_lm.tokenizer))
    loaded = dataset.load()
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, model(ids).logits)
    assert loaded.tokenizer.chat_template == embedded_lm.tokenizer.chat_template


def test_model_dataset_from_spec_is_read_only():
    dataset = ModelDataset(spec="embedded:smollm2-135m-instruct")
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(LanguageModel(None, None))
    with pytest.raises(ValueError, match="exactly one of"):
        ModelDataset(spec="a", path="b")
