"""The fine-tuning library on tiny random models: LoRA targets, the shuffled control, merge, resume, errors."""

from __future__ import annotations

import copy
import logging
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
import trl.trainer.utils
import yaml
from datasets import Dataset, DatasetDict
from peft import PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTuner
from trl import SFTTrainer

from metasyn.lm.models import LanguageModel
from metasyn.metacognition import finetuning
from tests.pipelines.finetune.tiny import (
    TINY_LORA,
    TINY_TRAINING,
    hand_made_examples,
    tiny_gemma3,
    tiny_llama,
)

BASE_PARAMETERS = Path(__file__).parents[1] / "conf" / "base" / "parameters_finetune.yml"
CONFIGURED_LORA = yaml.safe_load(BASE_PARAMETERS.read_text())["finetune"]["lora"]
MERGE_TOLERANCE = yaml.safe_load(BASE_PARAMETERS.read_text())["finetune"]["merge_check"]["relative_tolerance"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_lm() -> LanguageModel:
    return tiny_llama()


def _adapted_modules(model: torch.nn.Module) -> set[str]:
    return {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_configured_lora_targets_exactly_the_attention_projections(architecture):
    model = tiny_llama().model if architecture == "llama" else tiny_gemma3()
    attention_linears = {
        name for name, module in model.named_modules() if ".self_attn." in name and isinstance(module, torch.nn.Linear)
    }
    assert len(attention_linears) == 2 * 4  # q, k, v, o in each of the 2 layers (Gemma's q_norm/k_norm are not)

    finetuning.check_target_modules(model, CONFIGURED_LORA["target_modules"])
    adapted = get_peft_model(model, finetuning.lora_config(CONFIGURED_LORA))

    assert _adapted_modules(adapted) == attention_linears
    assert adapted.peft_config["default"].r == 16 and adapted.peft_config["default"].lora_alpha == 32


def test_unknown_target_module_is_named_before_training(tiny_lm):
    with pytest.raises(ValueError, match=r"\['query_key_value'\] do not exist in LlamaForCausalLM"):
        finetuning.check_target_modules(tiny_lm.model, ["q_proj", "query_key_value"])
    with pytest.raises(ValueError, match="list of module names"):
        finetuning.check_target_modules(tiny_lm.model, "q_proj")


def _with_row(examples: DatasetDict, index: int, **changes) -> DatasetDict:
    rows = examples["train"].to_list()
    rows[index] = {**rows[index], **changes}
    return DatasetDict({"train": Dataset.from_list(rows), "validation": examples["validation"]})


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda e: DatasetDict({"train": e["train"]}), r"splits \['train', 'validation'\]"),
        (lambda e: e["train"], "must be a datasets.DatasetDict"),
        (
            lambda e: DatasetDict({"train": e["train"].select([]), "validation": e["validation"]}),
            "'train' split .* is empty",
        ),
        (
            lambda e: DatasetDict({"train": e["train"].remove_columns("answers"), "validation": e["validation"]}),
            r"lacks columns \['answers'\]",
        ),
        (lambda e: _with_row(e, 0, task="essay"), "task 'essay' is not one of"),
        (lambda e: _with_row(e, 1, target_confidence=1.5), "1.5 is not a probability"),
        (lambda e: _with_row(e, 11, preferred=3), "preferred is 3"),
        (lambda e: _with_row(e, 2, answers=["5", "6"]), "needs 1 answer"),
        (
            lambda e: _with_row(e, 3, completion=[{"role": "assistant", "content": "Answer: 11\nConfidence: 0.99"}]),
            "does not state its answers and target",
        ),
        (
            lambda e: _with_row(e, 4, prompt=[{"role": "assistant", "content": "hi"}]),
            "ending with the user turn",
        ),
    ],
)
def test_malformed_training_examples_fail_with_a_clear_error(corrupt, message):
    with pytest.raises(ValueError, match=message):
        finetuning.validate_training_examples(corrupt(hand_made_examples()))


def test_model_without_chat_template_fails_before_training(tiny_lm, tmp_path):
    tokenizer = copy.deepcopy(tiny_lm.tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        finetuning.train_adapter(
            LanguageModel(tiny_lm.model, tokenizer),
            hand_made_examples(),
            TINY_LORA,
            TINY_TRAINING,
            tmp_path / "run",
            0,
        )
    assert not (tmp_path / "run").exists()


def test_examples_longer_than_max_length_fail_before_training(tiny_lm, tmp_path):
    with pytest.raises(ValueError, match="longer than max_length=32 tokens"):
        finetuning.train_adapter(
            tiny_lm, hand_made_examples(), TINY_LORA, {**TINY_TRAINING, "max_length": 32}, tmp_path, 0
        )


def _parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


PATIENCE_2 = {"patience": 2, "threshold": 0.0}


def test_early_stopping_ends_training_at_a_plateau_and_keeps_the_best_step(tiny_lm, tmp_path):
    # A learning rate of 0 leaves the validation loss flat: with patience 2 and an evaluation every step, steps 2
    # and 3 do not improve on step 1, so training stops at step 3 of the 12 that 3 epochs would take.
    training = TINY_TRAINING | {
        "learning_rate": 0.0,
        "eval_on_start": False,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
    }
    flat = finetuning.train_adapter(
        tiny_lm, hand_made_examples(), TINY_LORA, training, tmp_path / "flat", 0, PATIENCE_2
    )
    assert flat.run["optimizer_steps"] == 3 and flat.run["best_step"] == 1
    assert len(flat.log["eval_loss"].dropna()) == 3
    # A loss that keeps falling is not a plateau: all 12 steps run.
    learning = training | {"learning_rate": 1.0e-3}  # at 5e-3 the tiny model overfits by step 10
    whole = finetuning.train_adapter(
        tiny_lm, hand_made_examples(), TINY_LORA, learning, tmp_path / "whole", 0, PATIENCE_2
    )
    assert whole.run["optimizer_steps"] == 12 and whole.run["best_validation_loss"] < flat.run["best_validation_loss"]


def test_training_lowers_validation_loss_and_leaves_the_base_model_untouched(tiny_lm, tmp_path):
    before = _parameters(tiny_lm.model)
    result = finetuning.train_adapter(tiny_lm, hand_made_examples(), TINY_LORA, TINY_TRAINING, tmp_path, seed=0)

    validation = result.log["eval_loss"].dropna().tolist()
    assert len(validation) == 1 + TINY_TRAINING["num_train_epochs"]  # before training, then every epoch
    assert validation[-1] < validation[0]
    # r * (in + out) per projection: q and o are 64 -> 64, k and v 64 -> 32 (2 KV heads of 16), in 2 layers.
    assert result.run["trainable_parameters"] == 2 * 4 * (2 * (64 + 64) + 2 * (64 + 32))
    assert result.run["optimizer_steps"] == 4 * TINY_TRAINING["num_train_epochs"]  # 14 examples in batches of 4
    assert result.run["resumed_from_checkpoint"] is None
    assert set(result.adapter.weights) and all("lora_" in name for name in result.adapter.weights)
    assert not _adapted_modules(tiny_lm.model)
    assert all(torch.equal(before[name], tensor) for name, tensor in tiny_lm.model.state_dict().items())


def test_the_fused_head_scores_only_labelled_tokens_with_the_same_log_probabilities(tiny_lm, monkeypatch):
    model = copy.deepcopy(tiny_lm.model)
    trl.trainer.utils.add_fused_lm_head(model)
    inputs = tiny_lm.tokenizer(["the capital of France is Paris"] * 2, return_tensors="pt")
    labels = inputs["input_ids"].clone()
    labels[:, :4] = -100  # a prompt of 4 tokens: 3 of the shifted (next-token) labels per row
    rows, positions = labels.shape
    scored = []
    chunked = trl.trainer.utils._ChunkedLogProbFunction

    def counting_apply(hidden, *rest):
        scored.append(len(hidden))
        return chunked.apply(hidden, *rest)

    monkeypatch.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", types.SimpleNamespace(apply=counting_apply))
    every_position = model(**inputs, labels=labels, fused_lm_head=True)
    with finetuning.scoring_completion_tokens_only():
        labelled_only = model(**inputs, labels=labels, fused_lm_head=True)
    assert scored == [rows * (positions - 1), rows * (positions - 1 - 3)]
    torch.testing.assert_close(labelled_only.log_probs, every_position.log_probs, rtol=0, atol=1e-6)
    assert labelled_only.log_probs[:, :3].eq(0).all()  # the prompt positions: no label, no log-probability
    assert trl.trainer.utils._use_triton(torch.device("cpu")) is False  # restored


def _adapter_with_b(model: torch.nn.Module, value: float) -> finetuning.Adapter:
    """PEFT's random A with every entry of B set to ``value``: the update B A scale is as small as B.

    B = 1e-2 is a normal-size update (well above bfloat16's resolution of the tiny model's weights), 1e-6 one that
    bfloat16 rounds away, 0 an untrained adapter.
    """
    adapted = get_peft_model(copy.deepcopy(model), finetuning.lora_config(TINY_LORA))
    weights = {
        name: torch.full_like(tensor, value) if "lora_B" in name else tensor
        for name, tensor in get_peft_model_state_dict(adapted).items()
    }
    return finetuning.Adapter(adapted.peft_config["default"], weights)


def _in_dtype(lm: LanguageModel, dtype: torch.dtype) -> LanguageModel:
    return LanguageModel(lm.model.to(dtype), lm.tokenizer)


def _check_prompts(count: int = 3) -> list:
    return hand_made_examples()["validation"]["prompt"][:count]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_model_gives_the_adapted_logits_in_the_dtype_it_is_stored_in(dtype):
    lm = _in_dtype(tiny_llama(), dtype)
    before = _parameters(lm.model)

    merged, check = finetuning.merge_adapter(lm, _adapter_with_b(lm.model, 1e-2), _check_prompts(), MERGE_TOLERANCE)

    assert check["relative_logit_diff"] <= MERGE_TOLERANCE
    assert check["relative_logit_diff"] == pytest.approx(
        check["max_abs_logit_diff"] / check["adapter_max_abs_logit_change"]
    )
    assert check["adapter_max_abs_logit_change"] > 1e-2  # the check compares models that differ from the base
    assert check["float32_relative_logit_diff"] < 1e-4  # the merge itself is exact up to float32 rounding
    assert check["dtype"] == str(dtype).removeprefix("torch.") and check["prompts"] == 3
    assert not isinstance(merged.model, PeftModel) and not _adapted_modules(merged.model)
    assert merged.model.dtype == dtype
    assert not _adapted_modules(lm.model)  # the base model is not merged into
    assert all(torch.equal(before[name], tensor) for name, tensor in lm.model.state_dict().items())


def test_a_bfloat16_merge_that_rounds_a_minuscule_adapter_away_fails():
    lm = _in_dtype(tiny_llama(), torch.bfloat16)
    minuscule = _adapter_with_b(lm.model, 1e-6)
    # The premise: the update is below bfloat16's resolution, so rounding base + update gives back the base weights.
    weight = lm.model.model.layers[0].self_attn.q_proj.weight
    a, b = (minuscule.weights[f"base_model.model.model.layers.0.self_attn.q_proj.lora_{m}.weight"] for m in "AB")
    update = (b @ a) * TINY_LORA["lora_alpha"] / TINY_LORA["r"]
    assert (weight.float() + update).to(torch.bfloat16).eq(weight).float().mean() > 0.99

    with pytest.raises(
        RuntimeError, match="rounding the merged weights to bfloat16 loses or distorts the adapter.s update"
    ) as error:
        finetuning.merge_adapter(lm, minuscule, _check_prompts(), MERGE_TOLERANCE)
    assert "model.dtype: float32" in str(error.value)  # says what to do


def test_the_minuscule_adapter_merges_exactly_in_float32():
    lm = tiny_llama()
    _, check = finetuning.merge_adapter(lm, _adapter_with_b(lm.model, 1e-6), _check_prompts(), MERGE_TOLERANCE)
    assert 0 < check["adapter_max_abs_logit_change"] < 1e-4  # a tiny effect, yet float32 keeps it
    assert check["relative_logit_diff"] <= MERGE_TOLERANCE


def test_a_merge_that_drops_the_adapter_is_rejected(tiny_lm, monkeypatch):
    # A merge that drops the adapter instead of folding it in.
    monkeypatch.setattr(BaseTuner, "merge_and_unload", BaseTuner.unload)
    with pytest.raises(RuntimeError, match="already in float32, before any rounding: the merge itself"):
        finetuning.merge_adapter(tiny_lm, _adapter_with_b(tiny_lm.model, 1e-2), _check_prompts(2), MERGE_TOLERANCE)


def test_an_adapter_that_changes_nothing_is_rejected(tiny_lm):
    untrained = _adapter_with_b(tiny_lm.model, 0.0)  # B = 0, as PEFT initialises it
    with pytest.raises(RuntimeError, match="changes no logit at all: it is still at its initialisation"):
        finetuning.merge_adapter(tiny_lm, untrained, _check_prompts(2), MERGE_TOLERANCE)


def test_the_training_summary_records_the_merge_check():
    log = pd.DataFrame({"loss": [2.0, 1.5, None], "eval_loss": [None, None, 1.7]})
    check = {"dtype": "bfloat16", "max_abs_logit_diff": 0.1, "adapter_max_abs_logit_change": 2.0,
             "relative_logit_diff": 0.05, "float32_relative_logit_diff": 1e-6, "relative_tolerance": 0.25,
             "prompts": 4}  # fmt: skip
    summary = finetuning.training_summary({"optimizer_steps": 2}, log, check)
    assert summary == {
        "optimizer_steps": 2,
        "final_train_loss": 1.5,
        "initial_validation_loss": 1.7,
        "final_validation_loss": 1.7,
        "merge_dtype": "bfloat16",
        "merge_max_abs_logit_diff": 0.1,
        "adapter_max_abs_logit_change": 2.0,
        "merge_relative_logit_diff": 0.05,
        "merge_relative_tolerance": 0.25,
    }


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_lm, tmp_path, monkeypatch):
    examples = hand_made_examples()
    training = {**TINY_TRAINING, "save_strategy": "steps", "save_steps": 2, "max_steps": 5}
    uninterrupted = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path / "whole", seed=0)

    steps_done = []
    original_step = SFTTrainer.training_step

    def crash_at_step_4(self, *args, **kwargs):
        if len(steps_done) == 3:
            raise KeyboardInterrupt("simulated interruption")
        steps_done.append(1)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path / "interrupted", seed=0)
    monkeypatch.setattr(SFTTrainer, "training_step", original_step)

    resumed = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path / "interrupted", seed=0)

    assert Path(resumed.run["resumed_from_checkpoint"]).name == "checkpoint-2"
    assert resumed.run["optimizer_steps"] == 5
    assert resumed.log["step"].max() == 5 and resumed.log["loss"].notna().sum() == 5  # steps 1-2 from the checkpoint
    for name, tensor in uninterrupted.adapter.weights.items():
        torch.testing.assert_close(resumed.adapter.weights[name], tensor)


def _cut_short_weights(checkpoint: Path) -> None:
    weights = checkpoint / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _unfinished_save(checkpoint: Path) -> None:
    (checkpoint / "trainer_state.json").unlink()


@pytest.mark.parametrize("damage", [_cut_short_weights, _unfinished_save])
def test_a_damaged_last_checkpoint_is_skipped_for_the_one_before(tiny_lm, tmp_path, caplog, damage):
    caplog.set_level(logging.INFO, logger=finetuning.__name__)
    examples = hand_made_examples()
    training = {**TINY_TRAINING, "save_strategy": "steps", "save_steps": 2, "max_steps": 4}
    complete = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path, seed=0)
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    damage(tmp_path / "checkpoint-4")

    resumed = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path, seed=0)

    assert f"Checkpoint {tmp_path / 'checkpoint-4'} cannot be resumed from" in caplog.text
    assert f"Resuming from {tmp_path / 'checkpoint-2'}, the last complete checkpoint" in caplog.text
    assert Path(resumed.run["resumed_from_checkpoint"]).name == "checkpoint-2"
    assert resumed.run["optimizer_steps"] == 4
    assert resumed.log["loss"].notna().sum() == 4  # steps 1-2 from the checkpoint's log, 3-4 trained again
    assert finetuning.checkpoint_problem(tmp_path / "checkpoint-4") is None  # written again, whole
    for name, tensor in complete.adapter.weights.items():
        torch.testing.assert_close(resumed.adapter.weights[name], tensor)


def test_training_starts_afresh_when_no_checkpoint_is_complete(tiny_lm, tmp_path, caplog):
    examples = hand_made_examples()
    training = {**TINY_TRAINING, "save_strategy": "steps", "save_steps": 2, "max_steps": 4}
    complete = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path, seed=0)
    for checkpoint in tmp_path.glob("checkpoint-*"):
        _unfinished_save(checkpoint)

    again = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path, seed=0)

    assert f"No complete checkpoint left in {tmp_path}; training starts afresh" in caplog.text
    assert again.run["resumed_from_checkpoint"] is None
    assert again.log["loss"].notna().sum() == 4
    for name, tensor in complete.adapter.weights.items():
        torch.testing.assert_close(again.adapter.weights[name], tensor)


def test_checkpoints_of_another_configuration_are_not_resumed(tiny_lm, tmp_path, caplog):
    examples = hand_made_examples()
    training = {**TINY_TRAINING, "num_train_epochs": 1}
    finetuning.train_adapter(tiny_lm, examples, TINY_LORA, training, tmp_path, seed=0)
    assert (tmp_path / "checkpoint-4").is_dir()

    changed = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, {**training, "learning_rate": 1e-4}, tmp_path, 0)

    assert changed.run["resumed_from_checkpoint"] is None
    assert changed.log["loss"].notna().sum() == 4  # all four steps trained again
    assert "come from a run with a different training; deleting them" in caplog.text
    rerun = finetuning.train_adapter(tiny_lm, examples, TINY_LORA, {**training, "learning_rate": 1e-4}, tmp_path, 0)
    assert Path(rerun.run["resumed_from_checkpoint"]).name == "checkpoint-4"
