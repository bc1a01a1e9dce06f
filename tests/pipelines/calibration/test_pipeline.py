"""calibration through Kedro: the whole pipeline on tiny random models, the embedded model on hand-made
questions, and the smoke run after data_prep and finetune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from transformers import AutoModelForCausalLM

from metasyn.lm.models import LanguageModel
from metasyn.metacognition import evaluation
from metasyn.pipelines.calibration import create_pipeline, nodes
from metasyn.settings import CONFIG_LOADER_ARGS
from tests.conftest import declared_variants, tiny_llama_config

PROJECT_ROOT = Path(__file__).resolve().parents[3]
REPORTING = Path("data/08_reporting/calibration")
MODEL_OUTPUT = Path("data/07_model_output/calibration")


@pytest.fixture(scope="module")
def tiny_lm(embedded_lm) -> LanguageModel:
    """A 2-layer random Llama with the embedded model's tokenizer and chat template: fast, and it babbles."""
    tokenizer = embedded_lm.tokenizer
    config = tiny_llama_config(
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LanguageModel(AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tokenizer)


def _parameter_feed(parameters: dict, prefix: str = "params:") -> dict:
    """``params:a``, ``params:a.b``, ... as Kedro's context feeds them to nodes."""
    feed = {}
    for key, value in parameters.items():
        feed[prefix + key] = value
        if isinstance(value, dict):
            feed |= _parameter_feed(value, f"{prefix}{key}.")
    return feed


def test_whole_pipeline_on_tiny_models(tmp_path, monkeypatch, tiny_lm, test_questions):
    monkeypatch.chdir(tmp_path)  # the catalog's relative paths now point into tmp_path
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS, env="smoke")
    catalog = DataCatalog.from_config(loader["catalog"])
    feed = {"test_questions": test_questions, **_parameter_feed(loader["parameters"])}
    for name, data in feed.items():
        catalog[name] = MemoryDataset(data)
    for model in declared_variants().evaluated_models:
        # The same model under every name: every fine-tuned-minus-base difference must come out exactly 0.
        catalog[f"{model}.model"] = MemoryDataset(tiny_lm, copy_mode="assign")

    SequentialRunner().run(create_pipeline(declared_variants()), catalog)

    pairs = pd.read_parquet("data/05_model_input/calibration_question_pairs.parquet")
    assert pairs.groupby("domain").size().to_dict() == {"arithmetic": 2, "factual": 1, "multiple_choice": 1}
    for model in declared_variants().evaluated_models:
        outputs = pd.read_parquet(MODEL_OUTPUT / model / "calibration_outputs.parquet")
        assert outputs["question_id"].tolist() == test_questions["id"].tolist()
        assert (outputs["model"] == model).all()
        assert outputs["raw_output"].str.len().gt(0).all()
        # Unparseable babble is kept and flagged, not dropped.
        assert (outputs["parsed"] == outputs["answer"].notna() & outputs["confidence"].notna()).all()
        pairwise = pd.read_parquet(MODEL_OUTPUT / model / "pairwise_outputs.parquet")
        assert pairwise["pair_id"].tolist() == pairs["pair_id"].tolist()

    table = pd.read_parquet(REPORTING / "metrics_table.parquet")
    assert list(table.columns) == evaluation.TABLE_COLUMNS
    assert set(table["model"]) == set(declared_variants().evaluated_models)
    assert set(table["domain"]) == {"arithmetic", "multiple_choice", "factual", "all"}
    differences = table[table["metric"].str.endswith("_minus_base")]
    assert set(differences["model"]) == set(declared_variants().finetuned_names)
    defined = differences.dropna(subset=["value"])
    assert not defined.empty
    np.testing.assert_array_equal(defined[["value", "ci_low", "ci_high"]].to_numpy(), 0.0)
    assert (differences.loc[differences["value"].isna(), "note"] != "").all()

    summary = json.loads((REPORTING / "metrics_summary.json").read_text())
    assert set(summary) == set(declared_variants().evaluated_models)
    for figure in ("reliability_diagrams", "risk_coverage", "metrics_by_domain"):
        assert (REPORTING / f"{figure}.png").stat().st_size > 0


@pytest.mark.slow
def test_embedded_model_answers_hand_made_questions(embedded_lm, test_questions):
    generation = {"batch_size": 8, "dtype": "float32", "confidence_max_new_tokens": 24, "pairwise_max_new_tokens": 8}
    easy = test_questions[test_questions["id"].isin(["a1", "f1", "m1"])]
    generations = nodes.generate_confidence_answers(embedded_lm, easy, generation, ["stated", "forced"], "forced")
    stated = nodes.score_confidence_answers(generations, easy, "exact", model_name="base")
    outputs = nodes.elicit_confidences(embedded_lm, stated, easy, ["stated", "forced"], generation)
    outputs = outputs.set_index("question_id")
    assert outputs["raw_output"].str.strip().str.len().gt(0).all()
    # Greedy and on CPU in float32: the 135M model gets 2 + 2 right (it states no confidence unprompted
    # by training, so the output may well be unparsed; that is what parse_rate reports).
    assert outputs.loc["a1", "answer"] == "4" and outputs.loc["a1", "correct"]
    assert (outputs["parsed"] == outputs["confidence"].notna() & outputs["answer"].notna()).all()
    # forced: a confidence for every question, whatever the model wrote, from digits it expected there.
    assert outputs["confidence_forced"].between(0.05, 0.95).all() and (outputs["forced_mass"] > 0.5).all()
    assert "confidence_p_true" not in outputs.columns  # only the methods asked for


def test_unknown_methods_stop_before_any_generation(embedded_lm, test_questions):
    generation = {"batch_size": 8, "dtype": "float32", "confidence_max_new_tokens": 24}
    with pytest.raises(ValueError, match="unknown: \\['vibes'\\]"):
        nodes.generate_confidence_answers(embedded_lm, test_questions, generation, ["stated", "vibes"], "stated")
    with pytest.raises(ValueError, match="verdict_method 'forced' is not among"):
        nodes.generate_confidence_answers(embedded_lm, test_questions, generation, ["stated"], "forced")


@pytest.mark.slow
def test_smoke_run_writes_every_output(run_smoke):
    data = run_smoke("calibration") / "data"
    for model in declared_variants().evaluated_models:
        outputs = pd.read_parquet(data / "07_model_output" / "calibration" / model / "calibration_outputs.parquet")
        assert set(outputs.columns) >= {
            "question_id",
            "domain",
            "model",
            "raw_output",
            "answer",
            "confidence",
            "confidence_forced",
            "forced_mass",
            "confidence_p_true",
            "p_true_mass",
        }
        assert outputs[["confidence_forced", "confidence_p_true"]].notna().all().all()  # every question, every model
        assert (data / "07_model_output" / "calibration" / model / "pairwise_outputs.parquet").is_file()
        metrics = pd.read_parquet(data / "08_reporting" / "calibration" / model / "metrics.parquet")
        # Accuracy is the share of correct outputs, per domain and pooled, over every output (its n).
        accuracy = metrics[(metrics["method"] == "answer") & (metrics["metric"] == "accuracy")].set_index("domain")
        expected = outputs.groupby("domain")["correct"].agg(["mean", "size"])
        expected.loc["all"] = [outputs["correct"].mean(), len(outputs)]
        assert np.allclose(accuracy.loc[expected.index, "value"], expected["mean"])
        assert (accuracy.loc[expected.index, "n"] == expected["size"]).all()
    table = pd.read_parquet(data / "08_reporting" / "calibration" / "metrics_table.parquet")
    assert set(table["model"]) == set(declared_variants().evaluated_models)
    assert {f"{metric}_minus_base" for metric in ("ece", "brier", "auroc", "accuracy")} <= set(table["metric"])
    assert set(table["method"]) == {"answer", "stated", "forced", "p_true", "pairwise"}
    pooled = table[(table["domain"] == "all") & (table["model"] == "base")].set_index(["method", "metric"])
    # The base model's calibration exists under forced and p_true, with its n, whatever it wrote.
    for method in ("forced", "p_true"):
        assert np.isfinite(pooled.loc[(method, "brier"), "value"])
        assert pooled.loc[(method, "brier"), "n"] == pooled.loc[("answer", "accuracy"), "n"]
    for figure in ("reliability_diagrams", "risk_coverage", "metrics_by_domain"):
        assert (data / "08_reporting" / "calibration" / f"{figure}.png").stat().st_size > 0
