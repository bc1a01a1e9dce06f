"""data_prep through Kedro: a smoke run on the embedded model, splits and the early errors."""

import datasets
import pandas as pd
import pytest

from metasyn.pipelines.data_prep import nodes
from metasyn.questions.generated import (
    arithmetic_questions,
    factual_questions,
    multiple_choice_questions,
)


def _questions() -> pd.DataFrame:
    return pd.concat(
        [arithmetic_questions(40, 0), multiple_choice_questions(40, 0), factual_questions(40)], ignore_index=True
    )


def test_splits_are_disjoint_stratified_and_seeded():
    split = {"test_fraction": 0.15, "validation_fraction": 0.15}
    labelled = nodes.split_questions(_questions(), split, seed=0)
    assert labelled["split"].notna().all()
    counts = labelled.groupby(["domain", "split"]).size().unstack()
    assert (counts["test"] == 6).all() and (counts["validation"] == 6).all()  # 15% of 40, per domain
    assert labelled["id"].is_unique  # each question in exactly one split
    assert labelled["split"].equals(nodes.split_questions(_questions(), split, seed=0)["split"])
    assert not labelled["split"].equals(nodes.split_questions(_questions(), split, seed=1)["split"])


def test_too_few_samples_fail_before_any_model_is_loaded():
    with pytest.raises(ValueError, match="at least 2 samples"):
        nodes.check_sampling({"n_samples": 1, "matcher": "contains"})
    with pytest.raises(ValueError, match="Unknown answer matcher"):
        nodes.check_sampling({"n_samples": 10, "matcher": "vibes"})


def test_unknown_domain_and_empty_sources_fail_early():
    with pytest.raises(ValueError, match="Unknown question source"):
        nodes.assemble_questions({"astrology": {"count": 3}}, seed=0)
    with pytest.raises(ValueError, match="enables no source"):
        nodes.assemble_questions({}, seed=0)
    with pytest.raises(ValueError, match="enables no source"):
        nodes.assemble_questions({"arithmetic": None}, seed=0)


def test_a_null_source_is_disabled_so_an_overlay_can_drop_a_base_source():
    questions = nodes.assemble_questions({"arithmetic": None, "multiple_choice": {"count": 5}}, seed=0)
    assert set(questions["domain"]) == {"multiple_choice"} and len(questions) == 5


@pytest.mark.slow
def test_smoke_run_writes_every_output(run_smoke):
    project = run_smoke("data_prep")
    data = project / "data"
    samples = pd.read_parquet(data / "02_intermediate" / "answer_samples.parquet")
    questions = pd.read_parquet(data / "01_raw" / "question_splits.parquet")
    assert len(samples) == 3 * len(questions)  # every raw sample kept, unparseable ones included
    assert set(samples["parsed"]) <= {True, False}
    consistency = pd.read_parquet(data / "03_primary" / "question_consistency.parquet")
    assert consistency["consistency"].between(0, 1).all()
    bins = pd.read_parquet(data / "03_primary" / "consistency_bins.parquet")
    assert len(bins) == 10 and bins["n_questions"].sum() == (questions["split"] == "train").sum()
    examples = datasets.load_from_disk(str(data / "05_model_input" / "training_examples"))
    assert set(examples) == {"train", "validation"}
    used = {qid for split in examples.values() for ids in split["question_ids"] for qid in ids}
    test_ids = set(pd.read_parquet(data / "05_model_input" / "test_questions.parquet")["id"])
    assert test_ids and not used & test_ids  # test questions never reach training
    assert set(examples["train"]["task"]) == {"single", "pairwise"}
    assert (data / "08_reporting" / "data_prep" / "consistency.png").stat().st_size > 0
