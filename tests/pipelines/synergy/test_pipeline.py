"""The synergy pipeline end to end: on tiny random models through the real catalog (independent of the other
pipelines), its resume path, and the project's smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from scipy import stats as scipy_stats
from transformers import AutoModelForCausalLM

from metasyn import synergy
from metasyn.synergy import activity as synergy_activity
from tests.conftest import copy_project, declared_variants, tiny_llama_config

# conf/smoke/parameters_synergy.yml: 1 prompt per category, 8 steps, truncated to 7; ablation at 0, 0.5, 1 with
# 2 random orders. The tiny model has 2 layers x 4 heads of 16 dimensions.
PROMPTS, STEPS, TRUNCATED_STEPS, LAYERS, HEADS, HEAD_DIM = 6, 8, 7, 2, 4, 16
ABLATION_ROWS = 4 * 3 * PROMPTS  # (synergistic, redundant, 2 random orders) x fractions x prompts
HEAD_SCORE_COLUMNS = [
    "head_index", "layer", "head", "synergy", "synergy_rank", "redundancy", "redundancy_rank", "syn_red_score"
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory, embedded_lm) -> Path:
    """The project's configuration with every measured model replaced by one tiny random Llama."""
    project = copy_project(tmp_path_factory.mktemp("synergy_project"))
    torch.manual_seed(0)
    config = tiny_llama_config(len(embedded_lm.tokenizer), num_hidden_layers=LAYERS, num_attention_heads=HEADS)
    model_dir = project / "tiny_model"
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    embedded_lm.tokenizer.save_pretrained(model_dir)
    tiny = {"type": "metasyn.datasets.ModelDataset", "spec": str(model_dir), "device": "cpu", "dtype": "float32"}
    models = {f"{model}.model": tiny for model in ["base", *declared_variants().finetuned_names]}
    models["random_init.model"] = {**tiny, "random_init": True}
    (project / "conf" / "smoke" / "catalog_tiny_models.yml").write_text(yaml.safe_dump(models))
    return project


def run_synergy(project: Path, namespaces: list[str] | None = None) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="smoke") as session:
        session.run(pipeline_names=["synergy"], namespaces=namespaces)


def check_outputs(project: Path) -> None:
    """Every model's outputs exist with the documented shapes and schemas."""
    for model in declared_variants().synergy_models:
        output = project / "data" / "07_model_output" / "synergy" / model
        partitions = sorted((output / "head_activity").glob("*.safetensors"))
        assert len(partitions) == PROMPTS
        activity = load_file(partitions[0])
        assert activity["head_output_norms"].shape == (LAYERS, HEADS, STEPS)
        assert activity["completion_token_ids"].shape == (STEPS,)
        for atom in ("phiid_synergy", "phiid_redundancy", "phiid_synergy_truncated", "phiid_redundancy_truncated"):
            matrices = load_file(output / f"{atom}.safetensors")
            assert matrices["per_prompt"].shape == (PROMPTS, LAYERS * HEADS, LAYERS * HEADS)
            assert matrices["mean"].shape == (LAYERS * HEADS, LAYERS * HEADS)
            assert matrices["layer"].tolist() == [0] * HEADS + [1] * HEADS
        scores = pd.read_parquet(output / "head_scores.parquet")
        assert sorted(scores.columns) == sorted(HEAD_SCORE_COLUMNS)
        assert len(scores) == LAYERS * HEADS
        assert pd.read_parquet(output / "layer_profile.parquet")["layer"].tolist() == [0, 1]
        assert list(pd.read_parquet(output / "degenerate_heads.parquet").columns) == [
            "prompt_id", "head_index", "layer", "head", "reason"
        ]  # fmt: skip
        ends = pd.read_parquet(output / "natural_ends.parquet")
        assert list(ends.columns) == ["prompt_id", "category", "natural_end", "steps_used", "analysed"]
        assert len(ends) == PROMPTS and (ends["steps_used"] <= TRUNCATED_STEPS).all()
        reporting = project / "data" / "08_reporting" / "synergy" / model
        measures = json.loads((reporting / "graph_measures.json").read_text())
        assert set(measures) == {
            "edge_fraction", "synergy_network", "redundancy_network", "synergy_redundancy_spearman"
        }  # fmt: skip
        for figure in ("phiid_matrices", "head_scores", "layer_profile"):
            assert (reporting / f"{figure}.png").stat().st_size > 0
        ablated = model in declared_variants().evaluated_models
        assert (output / "ablation_curves.parquet").exists() == ablated
        assert (reporting / "ablation_curves.png").exists() == ablated
        # The noise scale comes from the base model alone, for every ablated model.
        assert (output / "head_output_spread.safetensors").exists() == (model == "base")
        if ablated:
            divergences = pd.read_parquet(output / "ablation_divergences.parquet")
            assert list(divergences.columns) == synergy.DIVERGENCE_COLUMNS and len(divergences) == ABLATION_ROWS
            curves = pd.read_parquet(output / "ablation_curves.parquet")
            pd.testing.assert_frame_equal(curves, synergy.ablation_curves(divergences))
            assert set(curves["order"]) == {"synergistic_first", "redundant_first", "random"}
            assert (curves.loc[curves["fraction"] == 0, "divergence"] == 0).all()
            assert (curves.loc[curves["fraction"] == 1, "divergence"] > 0).all()
    spread = load_file(project / "data" / "07_model_output" / "synergy" / "base" / "head_output_spread.safetensors")
    assert spread["sd"].shape == (LAYERS, HEADS, HEAD_DIM) and int(spread["positions"]) == PROMPTS * STEPS


@pytest.mark.slow
def test_synergy_pipeline_on_tiny_models_writes_every_output(tiny_project):
    run_synergy(tiny_project)
    check_outputs(tiny_project)


def count_recorded_prompts(monkeypatch) -> list[int]:
    """The number of prompts of each batch whose head activity is recorded from now on."""
    recorded = []
    record = synergy_activity.record_head_activity

    def counting_record(lm, prompts, steps, batch_size, generator):
        recorded.append(len(prompts))
        return record(lm, prompts, steps, batch_size, generator)

    monkeypatch.setattr(synergy_activity, "record_head_activity", counting_record)
    return recorded


@pytest.mark.slow
def test_activity_extraction_resumes_where_it_stopped(tiny_project, monkeypatch):
    folder = tiny_project / "data" / "07_model_output" / "synergy" / "base" / "head_activity"
    if not folder.exists():
        run_synergy(tiny_project)
    saved = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.safetensors")}
    lost = sorted(saved)[-1]
    lost_activity = load_file(folder / lost)
    (folder / lost).unlink()  # as if the run had stopped before the last batch was saved
    recorded = count_recorded_prompts(monkeypatch)
    run_synergy(tiny_project, namespaces=["base"])
    assert recorded == [1]
    assert {path.name: path.stat().st_mtime_ns for path in folder.glob("*.safetensors") if path.name != lost} == {
        name: mtime for name, mtime in saved.items() if name != lost
    }
    # Greedy generation is deterministic: the recomputed prompt is what was lost.
    torch.testing.assert_close(load_file(folder / lost), lost_activity)

    run_synergy(tiny_project, namespaces=["base"])
    assert recorded == [1], "a run with every prompt saved must record nothing"


@pytest.mark.slow
def test_a_partition_cut_short_is_recorded_again_with_a_warning(tiny_project, monkeypatch, caplog):
    folder = tiny_project / "data" / "07_model_output" / "synergy" / "base" / "head_activity"
    if not folder.exists():
        run_synergy(tiny_project)
    # The last prompt, alone in its batch again on resume, so its recomputed activity is what was saved.
    cut = sorted(folder.glob("*.safetensors"))[-1]
    intact = {name: tensor.clone() for name, tensor in load_file(cut).items()}  # not a view of the file's pages
    cut.write_bytes(cut.read_bytes()[:100])  # what a kill mid-write of a non-atomic save would leave
    recorded = count_recorded_prompts(monkeypatch)
    run_synergy(tiny_project, namespaces=["base"])
    assert recorded == [1]
    assert f"Saved partition {cut} is unreadable, so it is computed again" in caplog.text
    torch.testing.assert_close(load_file(cut), intact)


@pytest.mark.slow
def test_smoke_run(run_smoke):
    smoke_project = run_smoke("synergy")
    synergy_outputs = smoke_project / "data" / "07_model_output" / "synergy"
    for model in declared_variants().synergy_models:
        scores = pd.read_parquet(synergy_outputs / model / "head_scores.parquet").dropna(subset=["syn_red_score"])
        n = len(scores)
        assert n > 1, model
        for rank in ("synergy_rank", "redundancy_rank"):
            # Averaged ranks of the scored heads: in [1, n], summing to n(n + 1)/2, ties sharing their mean rank.
            assert scores[rank].between(1, n).all() and scores[rank].sum() == n * (n + 1) / 2, (model, rank)
            assert (scores[rank].to_numpy() == scipy_stats.rankdata(scores[rank.removesuffix("_rank")])).all()
        assert (scores["syn_red_score"] == scores["synergy_rank"] - scores["redundancy_rank"]).all()
        profile = pd.read_parquet(synergy_outputs / model / "layer_profile.parquet")
        # Min-max scaled scores, averaged per layer; a layer without a scored head has none.
        assert profile["score"].dropna().between(0, 1).all() and profile["heads"].sum() == n, model
        assert (profile["score"].isna() == (profile["heads"] == 0)).all(), model


def test_a_namespaces_run_of_fine_tunes_needs_nothing_made_outside_them():
    """`kedro run --pipelines synergy --namespaces metacog,...` reads only finished inputs: models and base's spread."""
    from metasyn.pipelines.synergy import create_pipeline

    variants = declared_variants()
    fine_tunes = variants.finetuned_names
    selected = create_pipeline(variants).only_nodes_with_namespaces(fine_tunes)
    made_elsewhere = {name for name in selected.inputs() if not name.startswith("params:")}
    assert made_elsewhere == {"synergy_prompts", "base.head_output_spread"} | {f"{m}.model" for m in fine_tunes} | {
        f"{m}.head_activity_saved" for m in fine_tunes
    }
