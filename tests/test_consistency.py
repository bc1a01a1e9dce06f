"""Consistency, bins, targets and balancing on hand-made samples with known answers."""

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from metasyn.lm import prompts
from metasyn.metacognition import examples
from metasyn.metacognition import targets as targets_lib
from metasyn.metacognition.binning import equal_width_bin
from metasyn.metacognition.judgment import judgment_messages


def _samples(answers_by_question: dict[str, list], gold: dict[str, str]) -> pd.DataFrame:
    rows = []
    for question_id, answers in answers_by_question.items():
        for index, answer in enumerate(answers):
            rows.append(
                {
                    "question_id": question_id,
                    "sample_index": index,
                    "answer": answer,
                    "correct": answer == gold[question_id],
                }
            )
    return pd.DataFrame(rows)


def _reference(answers: dict[str, str | None], gold: dict[str, str]) -> pd.DataFrame:
    """Greedy reference answers, each worded as "= <answer>"."""
    return pd.DataFrame(
        {
            "question_id": list(answers),
            "answer": list(answers.values()),
            "answer_text": [None if answer is None else f"= {answer}" for answer in answers.values()],
            "correct": [answer is not None and answer == gold[question] for question, answer in answers.items()],
        }
    )


def test_question_consistency_known_values():
    gold = {"q1": "4", "q2": "B", "q3": "x", "q4": "7"}
    samples = _samples(
        {
            "q1": ["4"] * 7 + ["5"] * 2 + [None],  # greedy 4 (right), 7/10 agree
            "q2": ["B", "C", "C", "C", "C", "C", "C", "C", "C", "C"],  # greedy B (right), the modal sample C
            "q3": [None] * 10,  # nothing parseable, greedy neither
            "q4": ["7"] * 10,  # every sample right, the greedy answer wrong
        },
        gold,
    )
    reference = _reference({"q1": "4", "q2": "B", "q3": None, "q4": "8"}, gold)
    table = targets_lib.question_consistency(samples, reference).set_index("question_id")
    assert table.loc["q1", "consistency"] == pytest.approx(0.7)
    assert table.loc["q1", "reference_correct"]
    assert table.loc["q1", "n_unparsed"] == 1
    assert table["n_correct"].tolist() == [7, 1, 0, 10]  # from the samples, not the greedy answer
    assert table.loc["q2", "reference_answer"] == "B" and table.loc["q2", "reference_text"] == "= B"
    assert table.loc["q2", "consistency"] == pytest.approx(0.1)  # agreement with greedy, not with the mode
    assert table.loc["q2", "reference_correct"]
    assert table.loc["q3", "consistency"] == 0.0 and not table.loc["q3", "reference_correct"]
    assert pd.isna(table.loc["q3", "reference_answer"]) and pd.isna(table.loc["q3", "reference_text"])
    assert table.loc["q4", "consistency"] == 0.0 and not table.loc["q4", "reference_correct"]


def test_a_sampled_question_without_a_reference_answer_is_refused():
    samples = _samples({"q1": ["4", "4"], "q2": ["1", "2"]}, {"q1": "4", "q2": "1"})
    with pytest.raises(ValueError, match=r"1 sampled questions have no greedy reference answer \(e.g. \['q2'\]\)"):
        targets_lib.question_consistency(samples, _reference({"q1": "4"}, {"q1": "4"}))


def test_bins_put_full_consistency_in_top_bin():
    assert list(equal_width_bin([0.0, 0.05, 0.1, 0.55, 0.9, 1.0], 10)) == [0, 0, 1, 5, 9, 9]


def test_bin_accuracy_known_values():
    table = pd.DataFrame(
        {"consistency": [0.2, 0.2, 0.25, 0.9, 1.0, 1.0], "reference_correct": [True, False, False, True, True, False]}
    )
    bins = targets_lib.bin_accuracy(table, 10).set_index("bin")
    assert bins.loc[2, "n_questions"] == 3
    assert bins.loc[2, "accuracy"] == pytest.approx(1 / 3)
    assert bins.loc[9, "accuracy"] == pytest.approx(2 / 3)
    assert bins.loc[5, "n_questions"] == 0 and np.isnan(bins.loc[5, "accuracy"])


def test_targets_are_bin_accuracy_within_noise_clipped_and_seeded():
    table = pd.DataFrame(
        {
            "question_id": [f"q{i}" for i in range(200)],
            "consistency": [1.0] * 100 + [0.0] * 100,
            "reference_correct": [True] * 100 + [False] * 100,
        }
    )
    bins = targets_lib.bin_accuracy(table, 10)
    targets = targets_lib.target_confidences(table, bins, noise=0.05, seed=3)
    top, bottom = targets["target_confidence"][:100], targets["target_confidence"][100:]
    assert top.between(0.95, 1.0).all() and (top < 1.0).any()  # 1.0 + noise is clipped at 1
    assert bottom.between(0.0, 0.05).all()
    again = targets_lib.target_confidences(table, bins, noise=0.05, seed=3)
    assert targets["target_confidence"].equals(again["target_confidence"])


def test_balance_caps_overfull_bins_at_ratio_of_median():
    targets = pd.DataFrame({"question_id": [f"q{i:03d}" for i in range(60)], "bin": [9] * 40 + [5] * 10 + [2] * 10})
    balanced = targets_lib.balance_bins(targets, max_ratio=2.0, seed=0)
    counts = balanced["bin"].value_counts()
    assert counts[9] == 20 and counts[5] == 10 and counts[2] == 10
    assert balanced["question_id"].is_unique


def test_pairwise_examples_come_from_different_bins_and_prefer_higher_target():
    questions = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "domain": ["arithmetic"] * 3,
            "question": ["1+1?", "2+2?", "3+3?"],
            "choices": [[], [], []],
            "answer": ["2", "4", "6"],
            "aliases": [[], [], []],
        }
    )
    targets = pd.DataFrame(
        {
            "question_id": ["a", "b", "c"],
            "bin": [1, 1, 8],
            "target_confidence": [0.1, 0.12, 0.85],
            "reference_text": ["2", "5", "6"],
        }
    )
    pairs = examples.pairwise_task_examples(targets, questions, n_pairs=20, seed=0)
    assert len(pairs) == 20
    for pair in pairs:
        assert "c" in pair["question_ids"]
        preferred_id = pair["question_ids"][pair["preferred"] - 1]
        assert preferred_id == "c"
        assert pair["completion"][0]["content"].startswith(f"More confident: {pair['preferred']}")


def test_a_question_in_a_bin_without_training_questions_gets_no_target_and_is_dropped(caplog):
    training = pd.DataFrame(
        {"question_id": ["t1", "t2"], "consistency": [0.9, 0.95], "reference_correct": [True, False]}
    )
    bins = targets_lib.bin_accuracy(training, 10)  # only bin 9 has questions
    validation = pd.DataFrame(
        {"question_id": ["v1", "v2"], "consistency": [0.92, 0.35], "reference_correct": [True, True]}
    )
    with_targets = targets_lib.target_confidences(validation, bins, noise=0.0, seed=0)
    assert with_targets["target_confidence"].iloc[0] == 0.5 and np.isnan(with_targets["target_confidence"].iloc[1])
    with caplog.at_level("WARNING"):
        kept = targets_lib.defined_targets(with_targets)
    assert kept["question_id"].tolist() == ["v1"]
    assert "1 of 2 questions dropped: their consistency bins ([3]) hold no training question" in caplog.text


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


def test_a_float32_value_is_binned_by_its_exact_value():
    # float32(0.7) is 0.69999998..., below 0.7: bin 6 of 10 in double precision, where float32 arithmetic rounds
    # the product up to 7.0 (bin 7); likewise 0.9 (bin 8, not 9). float32(0.3) is 0.30000001: bin 3 either way.
    values = np.array([0.7, 0.9, 0.3], dtype=np.float32)
    assert equal_width_bin(values, 10).tolist() == [6, 8, 3]


def test_question_consistency_lists_questions_sorted_and_counts_samples():
    # Question "b" is sampled first, but the table is sorted by question id.
    samples = pd.DataFrame(
        {
            "question_id": ["b", "b", "a", "a", "a"],
            "sample_index": [0, 1, 1, 2, 3],
            "answer": ["x", "x", None, None, None],
            "correct": [True, True, False, False, False],
        }
    )
    # A reference with no parsed answer is never a correct one, even where the matcher said so.
    reference = pd.DataFrame(
        {"question_id": ["b", "a"], "answer": ["x", None], "answer_text": ["x", None], "correct": [True, True]}
    )
    table = targets_lib.question_consistency(samples, reference)
    assert table["question_id"].tolist() == ["a", "b"]
    assert table["n_samples"].tolist() == [3, 2]
    assert table["n_unparsed"].tolist() == [3, 0]
    assert table["reference_correct"].tolist() == [False, True]
    assert table["consistency"].tolist() == [0.0, 1.0]


def test_bin_accuracy_has_the_bin_edges_and_integer_counts():
    table = pd.DataFrame({"consistency": [0.1, 0.6], "reference_correct": [True, False]})
    bins = targets_lib.bin_accuracy(table, 4)
    assert list(bins.columns) == ["bin", "lower", "upper", "n_questions", "accuracy"]
    assert bins["lower"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert bins["upper"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert bins["n_questions"].tolist() == [1, 0, 1, 0] and bins["n_questions"].dtype.kind == "i"


def test_each_target_is_its_bin_accuracy_plus_its_own_seeded_uniform_draw():
    table = pd.DataFrame({"consistency": [0.55, 0.55, 0.56], "reference_correct": [True, False, True]})
    bins = targets_lib.bin_accuracy(table, 10)  # bin 5 holds all three: accuracy 2/3
    targets = targets_lib.target_confidences(table, bins, noise=0.1, seed=7)
    jitter = np.random.default_rng(7).uniform(-0.1, 0.1, size=3)
    np.testing.assert_allclose(targets["target_confidence"], 2 / 3 + jitter)
    assert targets["bin"].tolist() == [5, 5, 5]


def test_dropping_undefined_targets_logs_the_whole_message_and_renumbers_the_rows(caplog):
    with_targets = pd.DataFrame(
        {"question_id": ["v1", "v2", "v3"], "bin": [3, 9, 3], "target_confidence": [np.nan, 0.5, np.nan]}
    )
    with caplog.at_level("WARNING"):
        kept = targets_lib.defined_targets(with_targets)
    assert kept.to_dict("list") == {"question_id": ["v2"], "bin": [9], "target_confidence": [0.5]}
    assert kept.index.tolist() == [0]
    assert [record.getMessage() for record in caplog.records] == [
        "2 of 3 questions dropped: their consistency bins ([3]) hold no training question, so there is no "
        "empirical accuracy to set as their target. More training questions fill more bins."
    ]


def test_balancing_keeps_a_seeded_sample_of_an_overfull_bin_and_only_the_input_columns():
    targets = pd.DataFrame({"question_id": [f"q{i:03d}" for i in range(60)], "bin": [9] * 40 + [5] * 10 + [2] * 10})
    balanced = targets_lib.balance_bins(targets, max_ratio=2.0, seed=4)
    expected_top = targets[targets["bin"] == 9].sample(n=20, random_state=4)["question_id"]
    assert balanced.loc[balanced["bin"] == 9, "question_id"].tolist() == sorted(expected_top)
    assert list(balanced.columns) == ["question_id", "bin"] and balanced.index.tolist() == list(range(40))


def test_balancing_at_ratio_one_caps_every_bin_at_a_median_of_one():
    targets = pd.DataFrame({"question_id": [f"q{i}" for i in range(8)], "bin": [0, 1, 2, 3, 3, 3, 3, 3]})
    balanced = targets_lib.balance_bins(targets, max_ratio=1.0, seed=0)  # median count 1: one per bin
    assert balanced["bin"].value_counts().sort_index().tolist() == [1, 1, 1, 1]


QUESTIONS = pd.DataFrame(
    {
        "id": ["a", "b", "c"],
        "domain": ["arithmetic", "factual", "multiple_choice"],
        "question": ["1+1?", "Capital of France?", "Pick one"],
        "choices": [[], [], ["x", "y"]],
        "answer": ["2", "Paris", "A"],
        "aliases": [[], [], []],
    }
)


def _question(question_id: str) -> dict:
    return {"id": question_id, **QUESTIONS.set_index("id").loc[question_id].to_dict()}


def test_single_task_examples_are_the_prompt_the_answer_as_worded_and_the_target():
    targets = pd.DataFrame(
        {"question_id": ["b", "a"], "reference_text": ["Paris", "3"], "target_confidence": [0.8, 0.25],
         "n_correct": [10, 4], "n_samples": [10, 10]}
    )  # fmt: skip
    singles = examples.single_task_examples(targets, QUESTIONS)
    assert singles == [
        {
            "prompt": prompts.confidence_messages(_question("b")),
            "completion": [{"role": "assistant", "content": "Paris\nConfidence: 0.80"}],
            "task": "single",
            "domain": "factual",
            "question_ids": ["b"],
            "answers": ["Paris"],
            "target_confidence": 0.8,
            "preferred": -1,
            "ability": "can",  # 10 of 10 samples right
            "judgment_prompt": judgment_messages(_question("b")),
        },
        {
            "prompt": prompts.confidence_messages(_question("a")),
            "completion": [{"role": "assistant", "content": "3\nConfidence: 0.25"}],
            "task": "single",
            "domain": "arithmetic",
            "question_ids": ["a"],
            "answers": ["3"],
            "target_confidence": 0.25,
            "preferred": -1,
            "ability": "cannot",  # 4 of 10: below half
            "judgment_prompt": judgment_messages(_question("a")),
        },
    ]
    assert "Capital of France?" in singles[0]["prompt"][0]["content"]
    assert type(singles[0]["target_confidence"]) is float


class _CountingRng:
    """A seeded generator that counts its draws, or (``always``) always draws the same two rows."""

    def __init__(self, generator, always=None):
        self.generator, self.always, self.draws = generator, always, 0

    def choice(self, *args, **kwargs):
        self.draws += 1
        return np.array(self.always) if self.always is not None else self.generator.choice(*args, **kwargs)


def _counting(monkeypatch, always=None) -> list[_CountingRng]:
    made, real = [], np.random.default_rng

    def default_rng(seed):
        made.append(_CountingRng(real(seed), always))
        return made[-1]

    monkeypatch.setattr(np.random, "default_rng", default_rng)
    return made


def test_pairwise_examples_are_the_whole_known_example():
    targets = pd.DataFrame(
        {"question_id": ["a", "b"], "bin": [2, 7], "target_confidence": [0.2, 0.7], "reference_text": ["2", "Rome"]}
    )
    by_id = {"a": ("2", 0.2), "b": ("Rome", 0.7)}
    pairs = examples.pairwise_task_examples(targets, QUESTIONS, n_pairs=6, seed=1)
    assert len(pairs) == 6 and {tuple(p["question_ids"]) for p in pairs} == {("a", "b"), ("b", "a")}
    for pair in pairs:
        first, second = pair["question_ids"]
        preferred = 1 if by_id[first][1] > by_id[second][1] else 2
        assert pair["preferred"] == preferred
        assert pair["completion"] == [
            {
                "role": "assistant",
                "content": f"More confident: {preferred}\nAnswer 1: {by_id[first][0]}\nAnswer 2: {by_id[second][0]}",
            }
        ]
        assert pair["prompt"] == prompts.pairwise_messages(_question(first), _question(second))
        assert pair["domain"] == f"{_question(first)['domain']}|{_question(second)['domain']}"
        assert pair["answers"] == [by_id[first][0], by_id[second][0]]
        assert pair["task"] == "pairwise" and np.isnan(pair["target_confidence"])
        assert set(pair) == {"prompt", "completion", "task", "domain", "question_ids", "answers", "target_confidence", "preferred", "ability", "judgment_prompt"}  # fmt: skip
        assert pair["ability"] == "" and pair["judgment_prompt"] == []
    again = examples.pairwise_task_examples(targets, QUESTIONS, n_pairs=6, seed=1)
    assert [p["question_ids"] for p in again] == [p["question_ids"] for p in pairs]  # seeded


def test_a_tie_in_target_confidence_prefers_the_first_question():
    targets = pd.DataFrame(
        {"question_id": ["a", "b"], "bin": [8, 9], "target_confidence": [0.9, 0.9], "reference_text": ["2", "Paris"]}
    )
    pairs = examples.pairwise_task_examples(targets, QUESTIONS, n_pairs=4, seed=0)
    assert [pair["preferred"] for pair in pairs] == [1, 1, 1, 1]


def test_two_questions_from_different_bins_make_a_pair_at_every_draw(monkeypatch):
    made = _counting(monkeypatch)
    targets = pd.DataFrame(
        {"question_id": ["a", "b"], "bin": [2, 7], "target_confidence": [0.2, 0.7], "reference_text": ["2", "Rome"]}
    )
    assert len(examples.pairwise_task_examples(targets, QUESTIONS, n_pairs=20, seed=0)) == 20
    assert made[0].draws == 20  # without replacement, a draw never picks one question twice


def test_pairing_gives_up_after_fifty_draws_per_pair_and_never_draws_from_one_bin(monkeypatch):
    targets = pd.DataFrame(
        {
            "question_id": ["a", "b", "c"],
            "bin": [1, 1, 5],
            "target_confidence": [0.1, 0.1, 0.5],
            "reference_text": ["2", "x", "A"],
        }
    )
    made = _counting(monkeypatch, always=[0, 1])  # always the two questions of bin 1
    assert examples.pairwise_task_examples(targets, QUESTIONS, n_pairs=3, seed=0) == []
    assert made[0].draws == 150
    one_bin = targets.assign(bin=1)
    assert examples.pairwise_task_examples(one_bin, QUESTIONS, n_pairs=3, seed=0) == []
    assert made[1].draws == 0


class _CharacterTokenizer:
    """One token per character of the messages' contents (so lengths are known by hand)."""

    def apply_chat_template(self, messages, tokenize, return_dict):
        assert tokenize and not return_dict
        return list("".join(message["content"] for message in messages))


def _chat(prompt: str, completion: str, task: str = "single") -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": completion}], "task": task}  # fmt: skip


def test_dropping_long_examples_logs_the_kept_share_and_the_longest_and_numbers_the_table(caplog):
    splits = DatasetDict(
        {
            "train": Dataset.from_list([_chat("abc", "de"), _chat("abcdefgh", "ij", "pairwise"), _chat("a", "b")]),
            "validation": Dataset.from_list([_chat("abcd", "e")]),
        }
    )
    with caplog.at_level("INFO", logger="metasyn.metacognition.examples"):
        kept, lengths = examples.drop_long_examples(_CharacterTokenizer(), splits, max_length=5)
    assert kept["train"]["task"] == ["single", "single"] and len(kept["validation"]) == 1
    assert lengths.to_dict("list") == {
        "split": ["train", "train", "train", "validation"],
        "task": ["single", "pairwise", "single", "single"],
        "length": [5, 10, 2, 5],
        "kept": [True, False, True, True],
    }
    assert lengths.index.tolist() == [0, 1, 2, 3]
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        (
            "WARNING",
            "train: dropped 1 of 3 examples longer than max_length=5 tokens (finetune.training.max_length), "
            "kept 66.7%; the longest has 10 tokens",
        ),
        (
            "INFO",
            "validation: dropped 0 of 1 examples longer than max_length=5 tokens (finetune.training.max_length), "
            "kept 100.0%; the longest has 5 tokens",
        ),
    ]


def test_an_empty_split_is_kept_empty_and_logged_with_no_longest_example(caplog):
    splits = DatasetDict({"validation": Dataset.from_dict({"prompt": [], "completion": [], "task": []})})
    with caplog.at_level("INFO", logger="metasyn.metacognition.examples"):
        kept, lengths = examples.drop_long_examples(_CharacterTokenizer(), splits, max_length=5)
    assert len(kept["validation"]) == 0 and lengths.empty
    assert [record.getMessage() for record in caplog.records] == [
        "validation: dropped 0 of 0 examples longer than max_length=5 tokens (finetune.training.max_length), "
        "kept 0.0%; the longest has 0 tokens"
    ]
