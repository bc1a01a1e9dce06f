"""Consistency, bins, targets and balancing on hand-made samples with known answers."""

import numpy as np
import pandas as pd
import pytest

from metasyn.metacognition import examples
from metasyn.metacognition import targets as targets_lib
from metasyn.metacognition.binning import equal_width_bin


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


def test_modal_answer_prefers_first_seen_on_ties_and_ignores_unparsed():
    assert targets_lib.modal_answer(["b", "a", "a", "b", None, None, None]) == "b"
    assert targets_lib.modal_answer([None, None]) is None


def test_question_consistency_known_values():
    samples = _samples(
        {
            "q1": ["4"] * 7 + ["5"] * 2 + [None],  # modal 4 (right), 7/10
            "q2": ["B", "C", "C", "C", "C", "C", "C", "C", "C", "C"],  # modal C (wrong), 9/10
            "q3": [None] * 10,  # nothing parseable
        },
        gold={"q1": "4", "q2": "B", "q3": "x"},
    )
    table = targets_lib.question_consistency(samples).set_index("question_id")
    assert table.loc["q1", "consistency"] == pytest.approx(0.7)
    assert table.loc["q1", "modal_correct"]
    assert table.loc["q1", "n_unparsed"] == 1
    assert table.loc["q2", "modal_answer"] == "C"
    assert table.loc["q2", "consistency"] == pytest.approx(0.9)
    assert not table.loc["q2", "modal_correct"]
    assert table.loc["q3", "consistency"] == 0.0
    assert pd.isna(table.loc["q3", "modal_answer"])


def test_bins_put_full_consistency_in_top_bin():
    assert list(equal_width_bin([0.0, 0.05, 0.1, 0.55, 0.9, 1.0], 10)) == [0, 0, 1, 5, 9, 9]


def test_bin_accuracy_known_values():
    table = pd.DataFrame(
        {"consistency": [0.2, 0.2, 0.25, 0.9, 1.0, 1.0], "modal_correct": [True, False, False, True, True, False]}
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
            "modal_correct": [True] * 100 + [False] * 100,
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
            "modal_answer": ["2", "5", "6"],
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
    training = pd.DataFrame({"question_id": ["t1", "t2"], "consistency": [0.9, 0.95], "modal_correct": [True, False]})
    bins = targets_lib.bin_accuracy(training, 10)  # only bin 9 has questions
    validation = pd.DataFrame({"question_id": ["v1", "v2"], "consistency": [0.92, 0.35], "modal_correct": [True, True]})
    with_targets = targets_lib.target_confidences(validation, bins, noise=0.0, seed=0)
    assert with_targets["target_confidence"].iloc[0] == 0.5 and np.isnan(with_targets["target_confidence"].iloc[1])
    with caplog.at_level("WARNING"):
        kept = targets_lib.defined_targets(with_targets)
    assert kept["question_id"].tolist() == ["v1"]
    assert "1 of 2 questions dropped: their consistency bins ([3]) hold no training question" in caplog.text
