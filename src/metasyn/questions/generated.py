"""The project's own question sets, small enough for a CPU run and mixed in difficulty for small models.

Arithmetic is generated at graded difficulty (so a 135M model is right on the easy levels and wrong on the
hard ones); multiple-choice and short factual questions are hand-written lists shipped in ``data/``.
"""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pandas as pd

from metasyn.questions import OPTION_LETTERS, QUESTION_COLUMNS

# (operation, operand digit counts) per difficulty level, easiest first.
ARITHMETIC_LEVELS = [("+", 1, 1), ("+", 2, 1), ("+", 2, 2), ("-", 2, 2), ("*", 1, 1), ("*", 2, 1), ("+", 3, 3)]


def _operand(rng: np.random.Generator, digits: int) -> int:
    return int(rng.integers(10 ** (digits - 1) if digits > 1 else 1, 10**digits))


def arithmetic_questions(count: int, seed: int) -> pd.DataFrame:
    """``count`` arithmetic questions cycling through the difficulty levels, with numeric answers."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        operation, left_digits, right_digits = ARITHMETIC_LEVELS[index % len(ARITHMETIC_LEVELS)]
        left, right = _operand(rng, left_digits), _operand(rng, right_digits)
        if operation == "-" and right > left:
            left, right = right, left
        result = {"+": left + right, "-": left - right, "*": left * right}[operation]
        word = {"+": "plus", "-": "minus", "*": "times"}[operation]
        rows.append(
            {
                "id": f"arithmetic-{index:04d}",
                "domain": "arithmetic",
                "question": f"What is {left} {word} {right}?",
                "choices": [],
                "answer": str(result),
                "aliases": [],
            }
        )
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def _load_list(name: str) -> list:
    return json.loads(files("metasyn.questions").joinpath("data", name).read_text(encoding="utf-8"))


def multiple_choice_questions(count: int | None, seed: int) -> pd.DataFrame:
    """Four-option questions from the shipped list; the correct option's position is shuffled (seeded)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, (question, correct, distractors) in enumerate(_load_list("multiple_choice.json")[:count]):
        options = [correct, *distractors]
        order = rng.permutation(len(options))
        shuffled = [options[position] for position in order]
        rows.append(
            {
                "id": f"multiple_choice-{index:04d}",
                "domain": "multiple_choice",
                "question": question,
                "choices": shuffled,
                "answer": OPTION_LETTERS[int(np.flatnonzero(order == 0)[0])],
                "aliases": [],
            }
        )
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def factual_questions(count: int | None) -> pd.DataFrame:
    """Short factual questions from the shipped list, each with every accepted answer as an alias."""
    rows = [
        {
            "id": f"factual-{index:04d}",
            "domain": "factual",
            "question": question,
            "choices": [],
            "answer": aliases[0],
            "aliases": list(aliases),
        }
        for index, (question, aliases) in enumerate(_load_list("factual.json")[:count])
    ]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)
