"""The control fine-tunes' target transforms (metasyn.metacognition.controls) on hand-made example tables."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from metasyn.lm.answers import parse_confidence, parse_preference
from metasyn.metacognition import controls, finetuning
from tests.pipelines.finetune.tiny import hand_made_examples


def _examples(copies: int = 3) -> Dataset:
    """The hand-made training split repeated: 30 single (10 distinct targets) and 12 pairwise examples."""
    return Dataset.from_list(hand_made_examples()["train"].to_list() * copies)


def _rows(examples: Dataset, task: str) -> list[int]:
    return [index for index, name in enumerate(examples["task"]) if name == task]


def _states_its_targets(examples: Dataset) -> None:
    """Every completion states the example's own target (the transform rebuilt it) with the original answers."""
    for row in examples:
        text = row["completion"][0]["content"]
        if row["task"] == "single":
            assert parse_confidence(text) == pytest.approx(row["target_confidence"], abs=0.005)
            assert text.startswith(f"{row['answers'][0]}\nConfidence: ")
        else:
            assert parse_preference(text) == row["preferred"]
            assert text.endswith(f"Answer 1: {row['answers'][0]}\nAnswer 2: {row['answers'][1]}")
    finetuning.validate_training_examples(DatasetDict({"train": examples, "validation": examples}))


def test_shuffling_permutes_the_targets_within_each_task_and_keeps_the_answers():
    original = _examples()
    shuffled = controls.shuffle_confidence_targets(original, seed=0)

    for column in ("prompt", "task", "question_ids", "answers"):
        assert shuffled[column] == original[column]
    single, pairwise = _rows(original, "single"), _rows(original, "pairwise")
    before, after = original.to_list(), shuffled.to_list()
    assert sorted(after[i]["target_confidence"] for i in single) == sorted(
        before[i]["target_confidence"] for i in single
    )
    assert Counter(after[i]["preferred"] for i in pairwise) == Counter(before[i]["preferred"] for i in pairwise)
    assert sum(after[i]["target_confidence"] != before[i]["target_confidence"] for i in single) > len(single) // 2
    assert all(math.isnan(after[i]["target_confidence"]) and after[i]["preferred"] in (1, 2) for i in pairwise)
    assert all(after[i]["preferred"] == -1 for i in single)
    _states_its_targets(shuffled)
    # Seeded.
    assert controls.shuffle_confidence_targets(original, seed=0)["completion"] == shuffled["completion"]
    assert controls.shuffle_confidence_targets(original, seed=1)["completion"] != shuffled["completion"]


def test_flipping_gives_exactly_half_of_each_task_the_opposite_signal_and_leaves_the_rest():
    original = _examples()
    flipped = controls.flip_half_targets(original, seed=0)

    before, after = original.to_list(), flipped.to_list()
    single, pairwise = _rows(original, "single"), _rows(original, "pairwise")
    changed_single = [i for i in single if after[i]["target_confidence"] != before[i]["target_confidence"]]
    changed_pairwise = [i for i in pairwise if after[i]["preferred"] != before[i]["preferred"]]
    assert len(changed_single) == len(single) // 2 == 15  # no hand-made target is 0.5, so every flip shows
    assert len(changed_pairwise) == len(pairwise) // 2 == 6
    for i in changed_single:
        assert after[i]["target_confidence"] == pytest.approx(1 - before[i]["target_confidence"])
    assert all(after[i]["preferred"] == 3 - before[i]["preferred"] for i in changed_pairwise)
    for column in ("prompt", "task", "question_ids", "answers"):
        assert flipped[column] == original[column]
    _states_its_targets(flipped)
    # Seeded: the same half again for the same seed, another half for another.
    assert controls.flip_half_targets(original, seed=0)["completion"] == flipped["completion"]
    assert controls.flip_half_targets(original, seed=1)["completion"] != flipped["completion"]


def test_an_odd_task_count_flips_the_lower_half():
    original = Dataset.from_list(_examples(1).to_list()[:7])  # 7 single examples
    flipped = controls.flip_half_targets(original, seed=0)
    changed = np.asarray(flipped["target_confidence"]) != np.asarray(original["target_confidence"])
    assert changed.sum() == 3


def test_the_unrelated_target_depends_on_the_question_alone():
    original = _examples()
    unrelated = controls.unrelated_targets(original, seed=0)
    # Any other metacognition targets (another model's correctness) give the same unrelated targets.
    inverted = controls.flip_half_targets(controls.shuffle_confidence_targets(original, seed=3), seed=4)
    assert controls.unrelated_targets(inverted, seed=0)["completion"] == unrelated["completion"]

    by_question = {}
    for row in unrelated:
        values = [controls.unrelated_property(question_id, seed=0) for question_id in row["question_ids"]]
        if row["task"] == "single":
            assert row["target_confidence"] == values[0]
            by_question.setdefault(row["question_ids"][0], set()).add(row["target_confidence"])
        else:
            assert row["preferred"] == (1 if values[0] >= values[1] else 2)
    assert all(len(values) == 1 for values in by_question.values())  # a question's number is fixed
    assert len({value for values in by_question.values() for value in values}) > 5  # and differs between questions
    _states_its_targets(unrelated)
    assert controls.unrelated_targets(original, seed=1)["completion"] != unrelated["completion"]


def test_the_unrelated_target_is_independent_of_correctness():
    """On 400 questions whose metacognition target is their correctness, the unrelated confidence carries none of
    it (its correlation with correctness is at the level of chance, |r| < 2 / sqrt(n)), while the metacognition
    target is correctness itself."""
    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.5
    rows = [
        {**hand_made_examples()["train"][0], "question_ids": [f"q{index}"], "target_confidence": float(target)}
        for index, target in enumerate(correct)
    ]
    unrelated = np.asarray(controls.unrelated_targets(Dataset.from_list(rows), seed=0)["target_confidence"])
    assert abs(np.corrcoef(unrelated, correct)[0, 1]) < 2 / np.sqrt(len(correct))
    assert 0.4 < unrelated.mean() < 0.6 and unrelated.min() >= 0 and unrelated.max() <= 1
    assert np.allclose(unrelated * 100, np.round(unrelated * 100))  # on the two-decimal grid the format states
    assert np.corrcoef(np.asarray([row["target_confidence"] for row in rows]), correct)[0, 1] == pytest.approx(1)


@pytest.mark.parametrize("targets", sorted(controls.TARGET_TRANSFORMS))
def test_every_transform_keeps_the_splits_and_the_metacognition_targets_pass_through(targets):
    examples = hand_made_examples()
    transformed = finetuning.variant_examples(examples, targets, seed=0)
    if targets == "consistency":
        assert transformed is examples
        return
    assert set(transformed) == set(examples)
    for split in examples:
        # The controls change what the completion says; the judgment variant also asks another question.
        assert (transformed[split]["prompt"] == examples[split]["prompt"]) == (targets != "judgment")
        assert transformed[split]["completion"] != examples[split]["completion"]


def test_the_judgment_variant_asks_for_the_class_before_the_answer_and_keeps_the_pairwise_task():
    original = _examples(1)
    judged = controls.judgment_targets(original, seed=0)
    before, after = original.to_list(), judged.to_list()
    for old, new in zip(before, after, strict=True):
        if old["task"] == "pairwise":
            assert new["prompt"] == old["prompt"] and new["completion"] == old["completion"]
            continue
        assert new["task"] == "judgment" and new["prompt"] == old["judgment_prompt"]
        assert new["completion"][0]["content"] == f"Judgment: {old['ability']}\nAnswer: {old['answers'][0]}"
    assert {row["ability"] for row in after if row["task"] == "judgment"} == {"can", "uncertain", "cannot"}
    finetuning.validate_training_examples(DatasetDict({"train": judged, "validation": judged}))
