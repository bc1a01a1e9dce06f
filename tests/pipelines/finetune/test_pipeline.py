"""finetune through Kedro: both variants via the real catalog on a tiny model, the smoke run, and node errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner
from peft import PeftModel

from metasyn.datasets.adapter_dataset import AdapterDataset
from metasyn.lm.models import load_model
from metasyn.pipelines.finetune import create_pipeline, nodes
from metasyn.pipelines.variants import Variants, VariantsError
from tests.conftest import copy_project, declared_variants
from tests.pipelines.finetune.tiny import TINY_LORA, TINY_TRAINING, hand_made_examples, tiny_llama

# LoRA r=16 on q, k, v, o of SmolLM2-135M: 30 layers x 16 x (576+576 + 576+192 + 576+192 + 576+576).
SMOLLM2_TRAINABLE_PARAMETERS = 30 * 16 * (4 * 576 + 2 * 576 + 2 * 192)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's configuration, so that the run writes its data under tmp_path."""
    return copy_project(tmp_path)


def _sft_targets(project: Path, variant: str) -> pd.DataFrame:
    from datasets import load_from_disk

    examples = load_from_disk(str(project / f"data/05_model_input/finetune/{variant}/sft_examples"))
    return examples["train"].select_columns(["task", "answers", "target_confidence", "preferred"]).to_pandas()


def test_both_variants_run_through_the_catalog_on_hand_made_examples(project):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="smoke") as session:
        catalog = session.load_context().catalog
        catalog["training_examples"] = hand_made_examples()
        catalog["base.model"] = MemoryDataset(tiny_llama(), copy_mode="assign")
        SequentialRunner().run(create_pipeline(declared_variants()), catalog)

    assert declared_variants().finetuned_names == ["metacog", "control_shuffled"]
    base = tiny_llama()
    inputs = base.tokenizer(["<|im_start|>user\nWhat is 2 plus 2?<|im_end|>\n"], return_tensors="pt")
    for variant in declared_variants().finetuned_names:
        summary = json.loads((project / f"data/08_reporting/finetune/{variant}/summary.json").read_text())
        assert summary["trainable_parameters"] == 2 * 16 * (2 * (64 + 64) + 2 * (64 + 32))
        assert summary["optimizer_steps"] == 2 and summary["train_examples"] == 14
        assert summary["merge_relative_logit_diff"] <= summary["merge_relative_tolerance"] == 0.25
        assert summary["merge_dtype"] == "float32" and summary["adapter_max_abs_logit_change"] > 0
        assert summary["final_validation_loss"] is not None
        log = pd.read_parquet(project / f"data/08_reporting/finetune/{variant}/training_log.parquet")
        assert log["loss"].notna().sum() == 2
        assert (project / f"data/08_reporting/finetune/{variant}/loss_curve.png").stat().st_size > 0
        # The merged model as saved equals base + the adapter as saved (read by PEFT itself).
        merged = load_model(str(project / f"data/06_models/{variant}/merged_model"), device="cpu", dtype="float32")
        adapted = PeftModel.from_pretrained(tiny_llama().model, str(project / f"data/06_models/{variant}/adapter"))
        with torch.inference_mode():
            torch.testing.assert_close(
                merged.model(**inputs).logits, adapted.eval()(**inputs).logits, atol=1e-4, rtol=0
            )
            assert not torch.allclose(merged.model(**inputs).logits, base.model(**inputs).logits, atol=1e-4)
        assert AdapterDataset(str(project / f"data/06_models/{variant}/adapter")).load().config.r == 16

    metacog, control = _sft_targets(project, "metacog"), _sft_targets(project, "control_shuffled")
    assert metacog["answers"].map(list).equals(control["answers"].map(list))
    single = metacog["task"] == "single"
    assert sorted(metacog.loc[single, "target_confidence"]) == sorted(control.loc[single, "target_confidence"])
    assert not metacog.loc[single, "target_confidence"].equals(control.loc[single, "target_confidence"])
    assert Counter(metacog.loc[~single, "preferred"]) == Counter(control.loc[~single, "preferred"])


def test_an_unknown_target_transform_is_a_clear_error():
    with pytest.raises(VariantsError, match=r"targets must name the variant's training targets.*got 'shuffle'"):
        create_pipeline(
            Variants.from_parameters(
                {"variants": {"finetuned": {"solo": {"targets": "shuffle"}}}, "finetune": {"seed": 0}}
            )
        )


@pytest.mark.slow
def test_smoke_run_fine_tunes_the_embedded_model(run_smoke):
    project = run_smoke("finetune")
    for variant in declared_variants().finetuned_names:
        summary = json.loads((project / f"data/08_reporting/finetune/{variant}/summary.json").read_text())
        assert summary["trainable_parameters"] == SMOLLM2_TRAINABLE_PARAMETERS == 1_843_200
        assert summary["merge_relative_logit_diff"] <= summary["merge_relative_tolerance"]
        assert summary["adapter_max_abs_logit_change"] > 0  # the check compares models that differ from the base
        assert (project / f"data/06_models/{variant}/merged_model/config.json").is_file()
    metacog, control = _sft_targets(project, "metacog"), _sft_targets(project, "control_shuffled")
    assert metacog["answers"].map(list).equals(control["answers"].map(list))
    single = metacog["task"] == "single"
    assert sorted(metacog.loc[single, "target_confidence"]) == sorted(control.loc[single, "target_confidence"])


def test_each_declared_variant_trains_its_own_targets_and_lora_fields():
    """conf/base's controls are configuration only: the template binds each variant's target transform and
    LoRA fields, and nothing else tells the variants apart."""
    bound = {}
    for node in create_pipeline(declared_variants("base")).nodes:
        namespace, name = node.name.split(".", 1)
        if name in {"prepare_examples", "train_adapter"}:
            bound.setdefault(namespace, {}).update(node.func.keywords)
    assert {namespace: (keywords["targets"], keywords["variant_lora"]) for namespace, keywords in bound.items()} == {
        "metacog": ("consistency", {}), "metacog_seed1": ("consistency", {}),
        "control_shuffled": ("shuffled", {}), "control_shuffled_seed1": ("shuffled", {}),
        "minimal_rank": ("consistency", {"r": 1, "lora_alpha": 2}),
        "flipped_targets": ("flipped_half", {}), "unrelated_task": ("unrelated", {}), "judgment": ("judgment", {}),
    }  # fmt: skip


def test_a_variants_lora_fields_replace_the_shared_ones(tmp_path):
    examples = hand_made_examples()
    adapter, _, run = nodes.train_adapter(
        examples,
        tiny_llama(),
        TINY_LORA,
        TINY_TRAINING | {"max_steps": 1},
        tmp_path,
        None,
        0,
        {"r": 1, "lora_alpha": 2},
    )
    assert (adapter.config.r, adapter.config.lora_alpha, adapter.config.lora_dropout) == (
        1,
        2,
        TINY_LORA["lora_dropout"],
    )
    # 2 layers x rank 1 x (q, o: 64 + 64; k, v: 64 + 32): a 16th of the smoke run's rank 16.
    assert run["trainable_parameters"] == 2 * 1 * (2 * (64 + 64) + 2 * (64 + 32))
