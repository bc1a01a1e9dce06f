"""Custom catalog datasets: save/load round trips, and saves interrupted mid-way that lose nothing."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from peft import LoraConfig, TaskType
from transformers import LlamaForCausalLM

import metasyn
from metasyn.atomic import atomic_directory
from metasyn.datasets import ModelDataset, SavedPartitionsDataset, TensorDataset, adapter_dataset, tensor_dataset
from metasyn.datasets.adapter_dataset import AdapterDataset
from metasyn.lm.models import LanguageModel
from metasyn.metacognition.finetuning import Adapter
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


def _tensors(value: float) -> dict[str, torch.Tensor]:
    return {"head_output_norms": torch.full((2, 3), value)}


def _half_written_then_fails(tensors, filename, metadata=None):
    """A serializer that dies mid-write: some bytes at ``filename``, then an error."""
    Path(filename).write_bytes(b"\x00" * 7)
    raise OSError("No space left on device")


def test_a_tensor_save_that_fails_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "activity.safetensors"
    dataset = TensorDataset(filepath=str(path))
    dataset.save(_tensors(1.0))
    monkeypatch.setattr(tensor_dataset, "save_file", _half_written_then_fails)
    with pytest.raises(DatasetError, match="No space left"):
        dataset.save(_tensors(2.0))
    assert torch.equal(dataset.load()["head_output_norms"], _tensors(1.0)["head_output_norms"])
    assert [entry.name for entry in tmp_path.iterdir()] == ["activity.safetensors"]  # no scratch file left


def test_a_tensor_save_whose_final_rename_fails_keeps_the_previous_file(tmp_path, monkeypatch):
    dataset = TensorDataset(filepath=str(tmp_path / "activity.safetensors"))
    dataset.save(_tensors(1.0))

    def failing_replace(source, destination):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DatasetError, match="rename failed"):
        dataset.save(_tensors(2.0))
    monkeypatch.undo()
    assert torch.equal(dataset.load()["head_output_norms"], _tensors(1.0)["head_output_norms"])
    assert [entry.name for entry in tmp_path.iterdir()] == ["activity.safetensors"]


def test_a_partition_write_killed_mid_way_leaves_the_saved_partitions_readable(tmp_path):
    """A real SIGKILL while a partition is being written: the folder reads back as the partitions saved before."""
    folder = tmp_path / "head_activity"
    partitions = PartitionedDataset(path=str(folder), dataset=TensorDataset, filename_suffix=".safetensors")
    partitions.save({"p1": _tensors(1.0)})
    script = f"""
import os, signal, torch
from pathlib import Path
from kedro_datasets.partitions import PartitionedDataset
from metasyn.datasets import TensorDataset, tensor_dataset

def killed_mid_write(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"\\x00" * 7)
    os.kill(os.getpid(), signal.SIGKILL)

tensor_dataset.save_file = killed_mid_write
PartitionedDataset(path={str(folder)!r}, dataset=TensorDataset, filename_suffix=".safetensors").save(
    {{"p1": {{"x": torch.ones(2)}}, "p2": {{"x": torch.ones(2)}}}}
)
"""
    # The child imports the same metasyn as this test.
    env = {**os.environ, "PYTHONPATH": str(Path(metasyn.__file__).parents[1])}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list(folder.glob(".p1.safetensors.*.tmp"))) == 1  # it died with a half-written scratch file
    loaded = partitions.load()
    assert list(loaded) == ["p1"]
    assert torch.equal(loaded["p1"]()["head_output_norms"], _tensors(1.0)["head_output_norms"])


def _adapter(value: float) -> Adapter:
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=2, target_modules=["q_proj"])
    return Adapter(config, {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.full((2, 8), value)})


def test_an_adapter_save_that_fails_mid_write_keeps_the_previous_adapter(tmp_path, monkeypatch):
    dataset = AdapterDataset(path=str(tmp_path / "adapter"))
    dataset.save(_adapter(1.0))
    monkeypatch.setattr(adapter_dataset, "save_file", _half_written_then_fails)
    with pytest.raises(DatasetError, match="No space left"):
        dataset.save(_adapter(2.0))
    loaded = dataset.load()
    assert loaded.config.r == 2
    assert torch.equal(next(iter(loaded.weights.values())), torch.full((2, 8), 1.0))
    assert [entry.name for entry in tmp_path.iterdir()] == ["adapter"]


def test_a_directory_whose_final_rename_fails_is_restored(tmp_path, monkeypatch):
    """Replacing a directory takes two renames (old aside, new in): when the second fails, the old one returns."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")
    renames = []

    def second_rename_fails(source, destination):
        renames.append(Path(destination))
        if len(renames) == 2:
            raise OSError("rename failed")
        original_replace(source, destination)

    original_replace = os.replace
    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="rename failed"), atomic_directory(target) as scratch:
        (scratch / "config.json").write_text("new")
    assert renames[1] == target
    assert (target / "config.json").read_text() == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["model"]


def test_saved_partitions_of_a_missing_folder_are_none(tmp_path):
    saved = SavedPartitionsDataset(path=str(tmp_path / "absent"), dataset=TensorDataset, filename_suffix=".safetensors")
    assert saved.load() == {}


def test_an_unreadable_saved_partition_is_left_out_with_a_warning_naming_it(tmp_path, caplog):
    folder = tmp_path / "head_activity"
    PartitionedDataset(path=str(folder), dataset=TensorDataset, filename_suffix=".safetensors").save(
        {"p1": _tensors(1.0), "p2": _tensors(2.0)}
    )
    truncated = folder / "p2.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:40])  # as a kill or a full disk would leave it
    saved = SavedPartitionsDataset(path=str(folder), dataset=TensorDataset, filename_suffix=".safetensors")
    loaded = saved.load()
    assert list(loaded) == ["p1"]
    assert torch.equal(loaded["p1"]["head_output_norms"], _tensors(1.0)["head_output_norms"])
    assert f"Saved partition {truncated} is unreadable, so it is computed again" in caplog.text
