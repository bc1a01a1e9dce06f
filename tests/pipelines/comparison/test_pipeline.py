"""The comparison pipeline on hand-made inputs whose answer is known: its tables and its report's sentences.

Synthetic study: 6 layers x 3 heads, 24 prompts. Every trained model's heads have stable synergy levels
rising with the head index and redundancy levels falling with it, so its ranking is reproducible across
prompts.
``metacog`` (two training seeds) gains synergy in the heads of layers 2 and 3 (the middle band);
``control_shuffled`` is base with fresh prompt noise; ``random_init`` is noise only. Calibration under ``forced``: base states 0.9 for everything (overconfident: about half its
answers are right); both metacog seeds state the truth (1 when right, 0 when wrong); the control keeps 0.9.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import VersionNotFoundError
from kedro.runner import SequentialRunner

from metasyn.metacognition import evaluation
from metasyn.pipelines.comparison import create_pipeline
from metasyn.pipelines.variants import Variants
from metasyn.run_record import RUNS_DIRECTORY, latest_records
from metasyn.settings import CONFIG_LOADER_ARGS
from metasyn.synergy import ablation_curves, head_scores, layer_profile, nanmean
from metasyn.versions import resolve_version, versions

PROJECT_ROOT = Path(__file__).resolve().parents[3]
LAYERS, HEADS_PER_LAYER, PROMPTS, QUESTIONS = 6, 3, 24, 120
HEADS = LAYERS * HEADS_PER_LAYER
MIDDLE_HEADS = slice(2 * HEADS_PER_LAYER, 4 * HEADS_PER_LAYER)
_FIRST_HALF = (np.arange(PROMPTS) < PROMPTS // 2)[:, None, None]
VARIANTS = Variants.from_parameters(
    {
        "variants": {
            "finetuned": {
                "metacog": {"targets": "consistency", "seeds": [0, 1]},
                "control_shuffled": {"targets": "shuffled", "seeds": [0]},
            },
            "baselines": ["random_init"],
        },
        "finetune": {"seed": 0},
    }
)


def _symmetric(rng: np.random.Generator, boost: float, structure: float) -> np.ndarray:
    """Per-prompt ``(prompts, H, H)`` atoms: a stable level per head (``structure`` times a ramp over the
    head index; a negative one falls) and prompt noise, plus ``boost`` on every pair of a middle-band head."""
    level = structure * np.linspace(0.0, 0.2, HEADS)
    values = level[None, :, None] + level[None, None, :] + rng.normal(0.0, 0.05, (PROMPTS, HEADS, HEADS))
    values[:, MIDDLE_HEADS, :] += boost
    values[:, :, MIDDLE_HEADS] += boost
    values = (values + values.transpose(0, 2, 1)) / 2
    values[:, np.arange(HEADS), np.arange(HEADS)] = np.nan
    return values


def _synergy_inputs(model: str, synergy: np.ndarray, redundancy: np.ndarray) -> dict:
    def tensors(per_prompt: np.ndarray) -> dict:
        index = torch.arange(HEADS)
        return {"per_prompt": torch.from_numpy(per_prompt), "mean": torch.from_numpy(nanmean(per_prompt, 0)),
                "layer": index // HEADS_PER_LAYER, "head": index % HEADS_PER_LAYER}  # fmt: skip

    scores = head_scores(nanmean(synergy, 0), nanmean(redundancy, 0), HEADS_PER_LAYER)
    return {
        f"{model}.phiid_synergy": tensors(synergy),
        f"{model}.phiid_redundancy": tensors(redundancy),
        f"{model}.head_scores": scores,
        f"{model}.layer_profile": layer_profile(scores),
        f"{model}.model_description": {
            "name_or_path": f"synthetic/{model}", "layers_x_heads": f"{LAYERS}x3", "parameters": 3_000_000
        },
        # Every prompt "ended" after its first half: the truncated PhiID is the same activity's first 12 prompts.
        f"{model}.phiid_synergy_truncated": tensors(np.where(_FIRST_HALF, synergy, np.nan)),
        f"{model}.phiid_redundancy_truncated": tensors(np.where(_FIRST_HALF, redundancy, np.nan)),
        f"{model}.natural_ends": pd.DataFrame({
            "prompt_id": [f"p{k:02d}" for k in range(PROMPTS)], "category": ["facts", "code"] * (PROMPTS // 2),
            "natural_end": pd.array([30] * (PROMPTS // 2) + [None] * (PROMPTS // 2), dtype="Int64"),
            "steps_used": 30, "analysed": _FIRST_HALF[:, 0, 0],
        }),
    }  # fmt: skip


def _ablation_divergences(rng: np.random.Generator, synergistic_gap: float) -> pd.DataFrame:
    """Per prompt: two random orders rising to 3 nats, synergistic-first ``synergistic_gap`` above their mean
    at the half-way fraction, redundant-first 0.5 below it."""
    rows = []
    for prompt in range(PROMPTS):
        randoms = [np.array([0.0, 1.0, 3.0]) + rng.normal(0.0, 0.05, 3) * [0, 1, 0] for _ in range(2)]
        mean = np.mean(randoms, axis=0)
        curves = [
            ("random", 0, randoms[0]),
            ("random", 1, randoms[1]),
            ("synergistic_first", 0, mean + [0, synergistic_gap, 0]),
            ("redundant_first", 0, mean - [0, 0.5, 0]),
        ]
        rows += [
            {
                "order": order,
                "repeat": repeat,
                "fraction": fraction,
                "heads_removed": int(fraction * HEADS),
                "prompt_id": f"p{prompt:02d}",
                "divergence": value,
            }
            for order, repeat, values in curves
            for fraction, value in zip([0.0, 0.5, 1.0], values)
        ]
    return pd.DataFrame(rows)  # fmt: skip


def _calibration_table() -> pd.DataFrame:
    correct = np.random.default_rng(7).random(QUESTIONS) < 0.5
    truthful = np.where(correct, 1.0, 0.0)
    confidence = {"base": np.full(QUESTIONS, 0.9), "metacog": truthful, "metacog_seed1": truthful,
                  "control_shuffled": np.full(QUESTIONS, 0.9)}  # fmt: skip
    bootstrap = {"n_resamples": 100, "confidence_level": 0.95, "seed": 0}
    pairs = pd.DataFrame({"pair_id": ["p0"], "domain": ["arithmetic"], "question_id_1": ["q0"],
                          "question_id_2": ["q1"], "preferred": pd.array([1], dtype="Int64"),
                          "correct_1": [True], "correct_2": [False], "consistency_1": [0.9], "consistency_2": [0.1]})  # fmt: skip

    def outputs(model: str) -> pd.DataFrame:
        return pd.DataFrame({"question_id": [f"q{k}" for k in range(QUESTIONS)], "domain": "arithmetic",
                             "model": model, "confidence": np.nan, "confidence_forced": confidence[model],
                             "correct": correct, "parsed": False})  # fmt: skip

    tables = [evaluation.model_metrics(outputs(m), pairs.assign(model=m), 10, bootstrap, ["forced"], 20)
              for m in confidence]  # fmt: skip
    tables += [
        evaluation.differences_from_base(outputs(m), pairs.assign(model=m), outputs("base"),
                                         pairs.assign(model="base"), 10, bootstrap, ["forced"], 20)
        for m in confidence if m != "base"
    ]  # fmt: skip
    return evaluation.combine_tables(*tables)


def _self_knowledge_tables(models: list[str]) -> dict[str, pd.DataFrame]:
    """The calibration pipeline's probe, judgment and distributional tables, one row set per model."""
    probes = pd.DataFrame(
        [{"model": m, "position": position, "layer": layer, "auroc": 0.7, "ci_low": 0.6, "ci_high": 0.8, "n": 40,
          "note": ""} for m in models for position in ("last_prompt", "answer_mean") for layer in (0, 5)]
    )  # fmt: skip
    judgments = pd.DataFrame(
        [{"model": m, "metric": metric, "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 40, "note": ""}
         for m in models for metric in ("judgment_parse_rate", "judgment_exact_match")]
    )  # fmt: skip
    distributional = pd.DataFrame(
        [{"model": m, "mean_kl": 1.2, "ci_low": 0.9, "ci_high": 1.5, "n": 12} for m in models]
    )
    return {
        "probe_auroc_table": probes,
        "judgment_metrics_table": judgments,
        "distributional_summary_table": distributional,
    }


# Two runs' ids, as Kedro names sessions (UTC timestamps, so that sorting them puts the latest last).
RUNS = ("2026-12-02T01.00.00.000Z", "2026-12-02T02.00.00.000Z")
REPORTING = Path("data/08_reporting/comparison")


def _record(run_id: str) -> dict:
    return {"run_id": run_id, "started": run_id, "git": {"commit": "abc123", "dirty": False}, "environment": "smoke",
            "device": {"kind": "cpu", "names": ["Test CPU"]}, "python": "3.11", "packages": {"torch": "2.9"},
            "nodes": [{"name": "base.compute_phiid", "seconds": 12.5}, {"name": "pair_phiid", "seconds": 0.25}]}  # fmt: skip


def _loader() -> OmegaConfigLoader:
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS, env="smoke")


def _catalog(inputs: dict, save_version: str | None = None) -> DataCatalog:
    """The project's catalog (smoke environment), with ``inputs`` in memory."""
    catalog = DataCatalog.from_config(_loader()["catalog"], save_version=save_version)
    for name, data in inputs.items():
        catalog[name] = MemoryDataset(data, copy_mode="assign")
    return catalog


@pytest.fixture(scope="module")
def comparison_runs(tmp_path_factory) -> dict:
    """The comparison pipeline run twice on the synthetic study (run ids ``RUNS``) in a temporary project.

    Returns the project directory and the first run's report as it was before the second run.
    """
    root = tmp_path_factory.mktemp("comparison")
    rng = np.random.default_rng(0)
    inputs = {}
    for model, boost, structure in (("base", 0.0, 1), ("metacog", 0.3, 1), ("metacog_seed1", 0.3, 1),
                                    ("control_shuffled", 0.0, 1), ("random_init", 0.0, 0)):  # fmt: skip
        # Redundancy falls where synergy rises: syn-red scores rise with depth, a ranking stable over prompts.
        inputs |= _synergy_inputs(model, _symmetric(rng, boost, structure), _symmetric(rng, 0.0, -structure))
    for model in VARIANTS.evaluated_models:
        divergences = _ablation_divergences(rng, 1.0 if model.startswith("metacog") else 0.5)
        inputs[f"{model}.ablation_divergences"] = divergences
        inputs[f"{model}.ablation_curves"] = ablation_curves(divergences)
    inputs["calibration_metrics_table"] = _calibration_table()
    inputs |= _self_knowledge_tables(VARIANTS.evaluated_models)

    parameters = _loader()["parameters"]
    inputs["params:calibration.verdict_method"] = "forced"
    inputs["params:synergy.ablation"] = parameters["synergy"]["ablation"]
    # The first run's numbers are checked; the second, with few resamples (fast), only has to differ from it.
    resamples = [{"shape_resamples": 99, "bootstrap_resamples": 200}, {"shape_resamples": 9, "bootstrap_resamples": 20}]
    previous = Path.cwd()
    os.chdir(root)  # the catalog's relative paths point into the temporary project
    try:
        for count, (run_id, sizes) in enumerate(zip(RUNS, resamples, strict=True), start=1):
            # As in a Kedro session: the run's record exists when it starts, beside the earlier runs' records.
            records = {earlier: functools.partial(_record, earlier) for earlier in RUNS[:count]}
            run_inputs = {
                "params:comparison": parameters["comparison"] | sizes,
                "run_records": records,
                "run_id": run_id,
            }
            SequentialRunner().run(create_pipeline(VARIANTS), _catalog(inputs | run_inputs, save_version=run_id))
            if count == 1:
                first_report = (REPORTING / "report.md" / run_id / "report.md").read_text()
    finally:
        os.chdir(previous)
    return {"root": root, "first_report": first_report}


@pytest.fixture(scope="module")
def comparison_run(comparison_runs) -> Callable[[str], Path]:
    """The path of one output file (``report.md``) of the first run (the one with the test's sizes)."""
    return lambda name: comparison_runs["root"] / REPORTING / name / RUNS[0] / name


def test_shape_and_band_changes_find_the_planted_boost_and_nothing_in_the_control(comparison_run):
    shapes = pd.read_parquet(comparison_run("profile_shape_changes.parquet"))
    distance = shapes[shapes["statistic"] == "l2_distance"].set_index("comparison")["p_value"]
    assert distance["metacog vs base"] < 0.05 and distance["metacog vs control_shuffled"] < 0.05
    assert distance["control_shuffled vs base"] > 0.05 and distance["metacog_seed1 vs metacog"] > 0.05
    bands = pd.read_parquet(comparison_run("band_score_changes.parquet")).set_index("contrast")
    assert bands.loc["metacog - base", "ci_low"] > 0
    assert bands.loc["control_shuffled - base", "ci_low"] <= 0 <= bands.loc["control_shuffled - base", "ci_high"]
    assert set(bands.index) == {
        "metacog - base", "control_shuffled - base", "(metacog - base) - (control_shuffled - base)",
        "(metacog_seed1 - base) - (metacog - base)",
    }  # fmt: skip


def test_raw_layer_changes_are_largest_where_synergy_was_planted(comparison_run):
    layers = pd.read_parquet(comparison_run("layer_quantity_changes.parquet"))
    metacog = layers[(layers["comparison"] == "metacog vs base") & (layers["quantity"] == "synergy")]
    assert set(metacog.nlargest(2, "estimate")["layer"]) == {2, 3}
    assert (metacog.set_index("layer").loc[[2, 3], "q_value"] < 0.05).all()
    redundancy = layers[(layers["comparison"] == "control_shuffled vs base")]
    assert (redundancy["q_value"] > 0.05).mean() > 0.9  # no planted change: (almost) no discoveries


def test_the_report_states_the_verdict_sizes_and_seed_spread(comparison_run):
    text = comparison_run("report.md").read_text()
    first_lines = text.split("\n\n")[:2]
    assert first_lines[0] == "# metasyn report" and first_lines[1].startswith(
        "**Demo sizes** (a demo of base, a 3M-parameter model): 24 synergy prompts"
    )
    calibration = re.search(r"Calibration of metacog \(confidence elicited by 'forced'\): (.*?)\n", text).group(1)
    assert (
        calibration.startswith("accuracy base ")
        and ", change 0.000 [0.000, 0.000]; debiased squared CE base" in calibration
    )
    assert re.search(
        r"; debiased squared CE base 0\.1\d\d \[[^;]*\(n = 120\), metacog 0\.000 .*?: a change, an improvement;",
        calibration,
    )
    assert re.search(r"AUROC base 0\.500 .*?: a change, an improvement;", calibration)
    assert "**metacog vs base** (n = 24 prompts)" in text
    assert "Between training seeds of metacog ('forced')" in text
    assert "Between training seeds: **metacog_seed1 vs metacog**" in text
    assert "random_init" in text and "paired t-test" not in text
    assert comparison_run("layer_profiles.png").stat().st_size > 0
    assert "synergistic-first 0.250 [" in text  # metacog's gap 1.0 vs base's 0.5, area over the fraction range 1
    assert "On the steps before each prompt's natural end (n = 12 prompts long enough)" in text
    assert "| base | all | 24 | 0.500 | 30.000 | 0.500 |" in text  # natural ends: half the prompts, at step 30
    assert "**head ablation**: `noise (scale 1.0 x the base model's head output SD)`" in text
    assert "- **code**: commit `abc123`" in text and f"| base.compute_phiid | 12.50 | {RUNS[0]} | 0.98 |" in text


def test_each_run_leaves_its_own_report_tables_and_figures(comparison_runs):
    folder = comparison_runs["root"] / REPORTING
    for output in ("report.md", "verdict.txt", "band_score_changes.parquet", "layer_profiles.png"):
        assert sorted(path.name for path in (folder / output).iterdir()) == list(RUNS), output
    first = folder / "report.md" / RUNS[0] / "report.md"
    assert first.read_text() == comparison_runs["first_report"]  # the second run did not overwrite it
    for run_id in RUNS:
        report = folder / "report.md" / run_id / "report.md"
        text = report.read_text()
        assert f"- **run**: `{run_id}`" in text  # the provenance names the run whose version folder holds it
        links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
        assert len(links) == 4 and all(run_id in link and (report.parent / link).is_file() for link in links)


def test_the_catalog_loads_the_latest_run_or_a_named_one(comparison_runs, monkeypatch):
    monkeypatch.chdir(comparison_runs["root"])
    catalog = _catalog({})
    assert versions(catalog, "report") == list(RUNS)
    assert resolve_version(catalog, "report") == RUNS[-1]
    assert f"- **run**: `{RUNS[-1]}`" in catalog.load("report")  # no version: the latest
    assert catalog.load("report", version=RUNS[0]) == comparison_runs["first_report"]
    assert resolve_version(catalog, "verdict", RUNS[0]) == RUNS[0]
    with pytest.raises(VersionNotFoundError, match=f"no version '2025-01-01'.*oldest first: {RUNS[0]}, {RUNS[1]}"):
        resolve_version(catalog, "report", "2025-01-01")


@pytest.mark.slow
def test_a_kedro_run_names_its_outputs_version_after_its_run_record(run_smoke):
    """Through a real session: the save version, the run record's id and the report's provenance agree."""
    project = run_smoke("comparison")
    [record] = [record for record in latest_records(project / RUNS_DIRECTORY) if record["pipeline"] == ["comparison"]]
    [version] = (project / REPORTING / "report.md").iterdir()
    assert version.name == record["run_id"]
    assert f"- **run**: `{record['run_id']}`" in (version / "report.md").read_text()
    assert [path.name for path in (project / REPORTING / "layer_profiles.png").iterdir()] == [record["run_id"]]
