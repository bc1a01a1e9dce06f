"""Hand-made test questions (the data_prep ``test_questions`` schema) and model outputs for calibration."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def test_questions() -> pd.DataFrame:
    rows = [
        ("a1", "arithmetic", "What is 2 plus 2?", [], "4", [], 0.9),
        ("a2", "arithmetic", "What is 7 times 8?", [], "56", [], 0.3),
        ("a3", "arithmetic", "What is 10 minus 3?", [], "7", [], 0.6),
        ("m1", "multiple_choice", "Which planet is largest?", ["Mars", "Jupiter", "Venus", "Earth"], "B", [], 0.8),
        ("m2", "multiple_choice", "What colour is a clear sky?", ["Green", "Red", "Blue", "Black"], "C", [], 0.5),
        ("f1", "factual", "What is the capital of France?", [], "Paris", ["Paris"], 1.0),
        ("f2", "factual", "Who wrote Hamlet?", [], "William Shakespeare", ["Shakespeare"], 0.2),
    ]
    columns = ["id", "domain", "question", "choices", "answer", "aliases", "consistency"]
    questions = pd.DataFrame(rows, columns=columns)
    # Correct samples of 10, the same order as the consistency (the judgment classes' truth).
    return questions.assign(
        reference_answer=questions["answer"], reference_correct=True, n_correct=[10, 3, 6, 8, 5, 10, 2], n_samples=10
    )


@pytest.fixture
def confidence_generations() -> pd.DataFrame:
    outputs = {
        "a1": "Answer: 4\nConfidence: 0.9",  # right, 0.9
        "a2": "Answer: 54\nConfidence: 80%",  # wrong, 0.8
        "a3": "Answer: 7",  # right, but no confidence: unparsed
        "m1": "Answer: B\nConfidence: 0.7",  # right, 0.7
        "m2": "I don't know.",  # no answer, no confidence
        "f1": "Answer: paris\nConfidence: 0.95",  # right, 0.95
        "f2": "Answer: Marlowe\nConfidence: 0.6",  # wrong, 0.6
    }
    return pd.DataFrame({"question_id": list(outputs), "raw_output": list(outputs.values())})


@pytest.fixture
def pairwise_generations() -> pd.DataFrame:
    rows = [
        ("p0", "arithmetic", "a1", "a2", "More confident: 1\nAnswer 1: 4\nAnswer 2: 54"),
        ("p1", "arithmetic", "a3", "a1", "More confident: 1"),
        ("p2", "multiple_choice", "m2", "m1", "More confident: 2"),
        ("p3", "factual", "f1", "f2", "Both look hard."),
    ]
    return pd.DataFrame(rows, columns=["pair_id", "domain", "question_id_1", "question_id_2", "raw_output"])
