"""Answer sampling saved per batch through the catalog's partitioned datasets: an interrupted run resumes with
the unsaved batches only and ends where an uninterrupted run does; batches of other settings are refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, DatasetError

from metasyn.lm.generation import generate
from metasyn.lm.prompts import confidence_messages, render_prompts
from metasyn.pipelines.data_prep import nodes
from tests.conftest import PROJECT_ROOT
from tests.pipelines.finetune.tiny import QUESTIONS, tiny_llama

SAMPLING = {
    "n_samples": 2,
    "temperature": 1.0,
    "max_new_tokens": 6,
    "batch_size": 4,
    "greedy_batch_size": 8,
    "dtype": "float32",
    "matcher": "contains",
}
QUESTION_TABLE = pd.DataFrame(QUESTIONS)  # 14 questions: batches of 4, 4, 4 and 2
BATCHES = 4


@pytest.fixture(scope="module")
def lm():
    return tiny_llama()


def catalog(folder: Path) -> DataCatalog:
    """The catalog's two views of the sample batches (conf/base/catalog_data_prep.yml), on ``folder``."""
    entries = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog_data_prep.yml").read_text())
    names = ["answer_sample_batches", "answer_sample_batches_saved"]
    return DataCatalog.from_config({name: {**entries[name], "path": str(folder)} for name in names})


class Preempted(Exception):
    """The job was stopped while it sampled."""


def run_sampling(lm, folder: Path, sampling: dict = SAMPLING, stop_after: int | None = None) -> list[str]:
    """``sample_answers`` and the save of its output, as Kedro runs them; the partitions the node had to sample.

    ``stop_after``: the job is preempted while that many batches are saved and the next one is sampled.
    """
    data = catalog(folder)
    lazy = nodes.sample_answers(QUESTION_TABLE, lm, sampling, 0, data.load("answer_sample_batches_saved"))

    def preempted():
        raise Preempted(f"preempted after {stop_after} batches")

    if stop_after is None:
        data.save("answer_sample_batches", lazy)
    else:
        interrupted = {partition: lazy[partition] for partition in sorted(lazy)[:stop_after]}
        interrupted |= {partition: preempted for partition in sorted(lazy)[stop_after:]}
        with pytest.raises(DatasetError, match=f"preempted after {stop_after} batches"):
            data.save("answer_sample_batches", interrupted)
    return sorted(lazy)


def scored(folder: Path) -> pd.DataFrame:
    greedy = pd.DataFrame({"question_id": QUESTION_TABLE["id"], "raw_output": ""})
    samples, _ = nodes.score_answer_samples(
        catalog(folder).load("answer_sample_batches"), greedy, QUESTION_TABLE, SAMPLING
    )
    return samples


def saved_files(folder: Path) -> dict[str, int]:
    return {path.stem: path.stat().st_mtime_ns for path in folder.glob("*.parquet")}


@pytest.fixture(scope="module")
def uninterrupted(lm, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted") / "answer_sample_batches"
    assert len(run_sampling(lm, folder)) == BATCHES
    return folder


def test_an_interrupted_run_resumes_with_the_unsaved_batches_and_equals_an_uninterrupted_one(
    lm, uninterrupted, tmp_path
):
    folder = tmp_path / "answer_sample_batches"
    planned = run_sampling(lm, folder, stop_after=2)
    first_two = saved_files(folder)
    assert sorted(first_two) == planned[:2]  # each batch reached disk as it finished

    resampled = run_sampling(lm, folder)

    assert resampled == planned[2:]  # only the unsaved batches were sampled again
    assert {name: mtime for name, mtime in saved_files(folder).items() if name in first_two} == first_two
    assert sorted(saved_files(folder)) == sorted(saved_files(uninterrupted))
    pd.testing.assert_frame_equal(scored(folder), scored(uninterrupted))
    assert run_sampling(lm, folder) == []  # a complete folder samples nothing


def test_the_samples_table_is_every_question_n_samples_times_in_question_order(uninterrupted):
    samples = scored(uninterrupted)
    assert list(samples.columns) == ["question_id", "domain", "sample_index", "output", "answer", "parsed", "correct"]
    assert samples["question_id"].tolist() == [question["id"] for question in QUESTIONS for _ in range(2)]
    assert samples["sample_index"].tolist() == [0, 1] * len(QUESTIONS)
    assert samples["output"].nunique() > 1  # sampled, not one greedy text


def test_batches_are_sampled_in_the_evaluated_prompt(lm, uninterrupted):
    from metasyn.metacognition import sampling

    plan = sampling.plan_batches(lm, QUESTION_TABLE, SAMPLING, 0)
    expected = render_prompts(lm.tokenizer, [confidence_messages(question) for question in QUESTIONS])
    assert [prompt for batch in plan for prompt in batch.prompts] == expected
    assert [batch.partition for batch in plan] == sorted(saved_files(uninterrupted))


@pytest.mark.parametrize("change", [{"temperature": 0.7}, {"batch_size": 3}, {"n_samples": 3}, {"dtype": "bfloat16"}])
def test_batches_saved_with_other_settings_are_refused_before_anything_is_sampled(lm, uninterrupted, change):
    before = saved_files(uninterrupted)
    with pytest.raises(ValueError, match="sampled with other settings.*Delete the folder of the catalog's"):
        run_sampling(lm, uninterrupted, SAMPLING | change)
    assert saved_files(uninterrupted) == before


def test_scoring_an_incomplete_sampling_says_to_run_it_again(lm, tmp_path):
    folder = tmp_path / "answer_sample_batches"
    run_sampling(lm, folder, stop_after=1)
    with pytest.raises(ValueError, match=r"10 questions missing, e.g. \['a5', 'a6', 'a7'\].*sample_answers node again"):
        scored(folder)


def test_the_reference_answers_are_each_questions_greedy_output_in_the_sampled_prompt(lm):
    reference = nodes.generate_reference_answers(QUESTION_TABLE, lm, SAMPLING)

    assert reference["question_id"].tolist() == QUESTION_TABLE["id"].tolist()
    prompts = render_prompts(lm.tokenizer, [confidence_messages(question) for question in QUESTIONS])
    one_at_a_time = [generate(lm, [prompt], SAMPLING["max_new_tokens"]).texts[0] for prompt in prompts]
    assert reference["raw_output"].tolist() == one_at_a_time  # greedy, and batching changes nothing
