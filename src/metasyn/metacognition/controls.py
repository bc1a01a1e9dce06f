"""Training-signal transforms of the fine-tune variants: the metacognition targets and the controls built from them.

Every control keeps the metacognition examples' questions, prompts, answers, task mix and completion format, and
changes only what the stated confidence (single-question task) and the stated choice (pairwise task) say, so that
a synergy change that appears after metacognition fine-tuning but not after a control cannot be put down to the
data, the format or fine-tuning as such:

- ``consistency``: the targets as data_prep made them (Steyvers et al.: accuracy per consistency bin);
- ``shuffled``: targets permuted across examples, so a question's confidence is another question's;
- ``flipped_half``: a seeded half of each task's examples given the opposite signal (confidence ``1 - target``,
  the other question preferred): a degenerate signal whose calibration should not improve;
- ``unrelated``: the confidence and the choice state a fixed property of the question that carries no
  information about correctness (a seeded hash of its id, the same in both tasks), a task of the same size
  that the model can learn only by memorising it;
- ``judgment``: not a control but a second form of self-knowledge: each single-question example asks first
  whether the model can answer (can / uncertain / cannot, the class of the base model's accuracy over its
  samples), then for the answer; the pairwise examples stay.

A variant names its transform in ``variants.finetuned.<name>.targets`` (conf/base/parameters.yml).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from datasets import Dataset

from metasyn.lm.prompts import assistant_message
from metasyn.metacognition.examples import target_completion

# Confidences are stated with two decimals (``confidence_completion``), so the unrelated property uses that grid.
CONFIDENCE_GRID = 100


def retargeted(examples: Dataset, confidences: np.ndarray, preferences: np.ndarray, description: str) -> Dataset:
    """The examples with new target confidences and pairwise choices, their completions rebuilt to state them."""

    def retarget(example: dict, index: int) -> dict:
        changed = {**example, "target_confidence": float(confidences[index]), "preferred": int(preferences[index])}
        return {**changed, "completion": assistant_message(target_completion(changed))}

    return examples.map(retarget, with_indices=True, desc=description)


def _task_rows(examples: Dataset) -> dict[str, np.ndarray]:
    task = np.asarray(examples["task"])
    return {name: np.flatnonzero(task == name) for name in ("single", "pairwise")}


def _targets(examples: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(examples["target_confidence"], dtype=float),
        np.asarray(examples["preferred"], dtype=int),
    )


def consistency_targets(examples: Dataset, seed: int) -> Dataset:
    """The metacognition targets, unchanged."""
    return examples


def shuffle_confidence_targets(examples: Dataset, seed: int) -> Dataset:
    """Permute target confidences among single-question examples and preferences among pairwise ones.

    The control keeps the data and format of the metacognition fine-tune but breaks the link between a question
    and the confidence the model is taught to state.
    """
    rng = np.random.default_rng(seed)
    confidences, preferences = _targets(examples)
    rows = _task_rows(examples)
    confidences[rows["single"]] = confidences[rng.permutation(rows["single"])]
    preferences[rows["pairwise"]] = preferences[rng.permutation(rows["pairwise"])]
    return retargeted(examples, confidences, preferences, "Shuffling confidence targets")


def flip_half_targets(examples: Dataset, seed: int) -> Dataset:
    """Give a seeded half (rounded down) of each task's examples the opposite signal.

    A flipped single-question example states ``1 - target``; a flipped pairwise example prefers the other
    question. Half the examples still carry the metacognition signal, so the model is taught both a question's
    confidence and its opposite.
    """
    rng = np.random.default_rng([seed, 6])  # its own stream: not the shuffled control's permutation
    confidences, preferences = _targets(examples)
    for task, rows in _task_rows(examples).items():
        flipped = rng.choice(rows, size=len(rows) // 2, replace=False)
        if task == "single":
            confidences[flipped] = 1.0 - confidences[flipped]
        else:
            preferences[flipped] = 3 - preferences[flipped]
    return retargeted(examples, confidences, preferences, "Flipping half the confidence targets")


def unrelated_property(question_id: str, seed: int) -> float:
    """A question's fixed pseudo-random number on the two-decimal grid, from its id alone (never its correctness)."""
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (CONFIDENCE_GRID + 1) / CONFIDENCE_GRID


def unrelated_targets(examples: Dataset, seed: int) -> Dataset:
    """State each question's ``unrelated_property`` as its confidence, and prefer the question with the larger one.

    The number depends on the question id and the seed only, so it is independent of the model's correctness
    and of the metacognition targets; it is the same wherever the question appears, in either task, so the
    model is taught a consistent mapping of the same size as the metacognition one. Ties prefer question 1.
    """
    confidences, preferences = _targets(examples)
    for index, (task, question_ids) in enumerate(zip(examples["task"], examples["question_ids"], strict=True)):
        properties = [unrelated_property(question_id, seed) for question_id in question_ids]
        if task == "single":
            confidences[index] = properties[0]
        else:
            preferences[index] = 1 if properties[0] >= properties[1] else 2
    return retargeted(examples, confidences, preferences, "Stating an unrelated property")


def judgment_targets(examples: Dataset, seed: int) -> Dataset:
    """Turn each single-question example into the judgment task: its judgment prompt, its class, then its answer."""

    def to_judgment(example: dict) -> dict:
        if example["task"] != "single":
            return example
        judged = {**example, "task": "judgment", "prompt": example["judgment_prompt"]}
        return {**judged, "completion": assistant_message(target_completion(judged))}

    return examples.map(to_judgment, desc="Asking for a judgment before the answer")


TARGET_TRANSFORMS: dict[str, Callable[[Dataset, int], Dataset]] = {
    "consistency": consistency_targets,
    "shuffled": shuffle_confidence_targets,
    "flipped_half": flip_half_targets,
    "unrelated": unrelated_targets,
    "judgment": judgment_targets,
}
