"""data_prep through Kedro: a smoke run on the embedded model, splits, the sampling regime, the length cut and
the early errors."""

import datasets
import pandas as pd
import pytest
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from metasyn.lm.models import LanguageModel
from metasyn.pipelines.data_prep import nodes
from metasyn.questions.generated import (
    arithmetic_questions,
    factual_questions,
    multiple_choice_questions,
)
from tests.pipelines.finetune.tiny import CHATML_TEMPLATE

# ChatML around a user and an assistant turn: 4 special tokens, "user\n", "\n", "assistant\n", "\n".
CHATML_OVERHEAD = 4 + 5 + 1 + 10 + 1


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


def test_consistency_is_agreement_with_the_greedy_answer_read_off_its_answer_line():
    questions = pd.DataFrame(
        [{"id": "f1", "domain": "factual", "question": "What is the capital of France?", "choices": [],
          "answer": "Paris", "aliases": ["Paris"], "split": "train"}]
    )  # fmt: skip
    outputs = ["Answer: Lyon\nConfidence: 0.9", "Answer: paris\nConfidence: 0.2", "Answer: Lyon\nConfidence: 0.9"]
    batch = pd.DataFrame({"question_id": ["f1"] * 3, "sample_index": [0, 1, 2], "output": outputs})
    greedy = pd.DataFrame({"question_id": ["f1"], "raw_output": ["Answer: Paris\nConfidence: 0.5"]})
    sampling = {"n_samples": 3, "matcher": "contains"}

    samples, reference = nodes.score_answer_samples({"000000-f1": lambda: batch}, greedy, questions, sampling)

    assert samples["answer"].tolist() == ["lyon", "paris", "lyon"]  # the confidence line is not part of it
    assert samples["correct"].tolist() == [False, True, False] and samples["parsed"].all()
    assert reference.to_dict("list") == {
        "question_id": ["f1"], "answer": ["paris"], "answer_text": ["Paris"], "correct": [True]
    }  # fmt: skip
    consistency = nodes.score_consistency(samples, reference, questions)
    # The modal sample (lyon, 2 of 3) is wrong; the greedy answer is right and 1 of 3 samples agree with it.
    assert consistency.loc[0, "reference_answer"] == "paris" and consistency.loc[0, "reference_correct"]
    assert consistency.loc[0, "reference_text"] == "Paris"  # as the model wrote it: what training states
    assert consistency.loc[0, "consistency"] == pytest.approx(1 / 3)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte and per ChatML special token, so an example's length can be counted by hand."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([], trainer)  # no merges: the byte alphabet only
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|im_end|>")
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def _example(task: str, prompt_bytes: int) -> dict:
    """An example of ``CHATML_OVERHEAD + prompt_bytes + 10`` tokens with the byte tokenizer."""
    return {
        "prompt": [{"role": "user", "content": "q" * prompt_bytes}],
        "completion": [{"role": "assistant", "content": "Answer: 42"}],
        "task": task,
    }


def _length_examples() -> datasets.DatasetDict:
    """Train examples of 81, 100, 101 and 121 tokens, validation ones of 41 and 102."""
    train = [_example("single", 50), _example("single", 69), _example("pairwise", 70), _example("pairwise", 90)]
    validation = [_example("single", 10), _example("pairwise", 71)]
    return datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "validation": datasets.Dataset.from_list(validation)}
    )


def test_examples_longer_than_max_length_are_dropped_and_every_length_is_tabulated(caplog):
    model = LanguageModel(None, byte_tokenizer())  # the node reads only the tokenizer

    kept, lengths = nodes.drop_long_examples(_length_examples(), model, max_length=100)

    assert kept["train"]["prompt"] == _length_examples()["train"]["prompt"][:2]  # 100 tokens is kept, 101 is not
    assert kept["validation"]["task"] == ["single"]
    assert lengths.to_dict("list") == {
        "split": ["train"] * 4 + ["validation"] * 2,
        "task": ["single", "single", "pairwise", "pairwise", "single", "pairwise"],
        "length": [81, 100, 101, 121, 41, 102],
        "kept": [True, True, False, False, True, False],
    }
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(message.startswith("train: dropped 2 of 4 examples longer than max_length=100") for message in warnings)
    assert any(message.startswith("validation: dropped 1 of 2") for message in warnings)

    figure = nodes.plot_example_lengths(lengths, 100)
    assert [ax.get_title() for ax in figure.axes] == [
        "train: 2 of 4 dropped\nlonger than max_length=100 (dashed)",
        "validation: 1 of 2 dropped\nlonger than max_length=100 (dashed)",
    ]


def test_no_max_length_keeps_every_example():
    kept, lengths = nodes.drop_long_examples(_length_examples(), LanguageModel(None, byte_tokenizer()), None)
    assert len(kept["train"]) == 4 and lengths["kept"].all()


def test_a_split_with_every_example_too_long_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Every train example is longer than max_length=80 tokens .* at least 81"):
        nodes.drop_long_examples(_length_examples(), LanguageModel(None, byte_tokenizer()), max_length=80)


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
    # Each target is its bin's training accuracy plus noise within the configured bound (clipping only
    # brings it nearer); a question whose bin has no training question has no target and no row.
    targets = pd.read_parquet(data / "03_primary" / "confidence_targets.parquet")
    noise = yaml.safe_load((project / "conf" / "base" / "parameters_data_prep.yml").read_text())["data_prep"]
    noise = noise["targets"]["noise"]
    accuracy = targets["bin"].map(bins.set_index("bin")["accuracy"])
    assert len(targets) and accuracy.notna().all() and targets["target_confidence"].between(0, 1).all()
    assert ((targets["target_confidence"] - accuracy).abs() <= noise + 1e-12).all()
    examples = datasets.load_from_disk(str(data / "05_model_input" / "training_examples"))
    assert set(examples) == {"train", "validation"}
    used = {qid for split in examples.values() for ids in split["question_ids"] for qid in ids}
    test_ids = set(pd.read_parquet(data / "05_model_input" / "test_questions.parquet")["id"])
    assert test_ids and not used & test_ids  # test questions never reach training
    assert set(examples["train"]["task"]) == {"single", "pairwise"}
    assert (data / "08_reporting" / "data_prep" / "consistency.png").stat().st_size > 0
    lengths = pd.read_parquet(data / "05_model_input" / "example_lengths.parquet")
    assert lengths.groupby("split")["kept"].sum().to_dict() == {split: len(examples[split]) for split in examples}
    assert (data / "08_reporting" / "data_prep" / "example_lengths.png").stat().st_size > 0
