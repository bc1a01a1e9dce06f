"""The calibration evaluation library without Kedro: pairing, scoring, the model-of check, the consistency figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metasyn.lm.answers import get_matcher
from metasyn.metacognition import evaluation
from metasyn.metacognition.plots import consistency_figure


@pytest.fixture
def questions() -> pd.DataFrame:
    rows = [
        ("a1", "arithmetic", "What is 2 plus 2?", [], "4", [], 0.9),
        ("a2", "arithmetic", "What is 7 times 8?", [], "56", [], 0.3),
        ("f1", "factual", "What is the capital of France?", [], "Paris", ["Paris"], 1.0),
        ("f2", "factual", "Who wrote Hamlet?", [], "William Shakespeare", ["Shakespeare"], 0.2),
    ]
    return pd.DataFrame(rows, columns=["id", "domain", "question", "choices", "answer", "aliases", "consistency"])


def test_pairs_stay_within_a_domain_and_are_seeded(questions):
    pairs = evaluation.pair_questions(questions, per_domain=5, seed=0)
    assert pairs["pair_id"].tolist() == ["arithmetic-0000", "factual-0000"]
    assert {frozenset(pair) for pair in zip(pairs["question_id_1"], pairs["question_id_2"])} == {
        frozenset({"a1", "a2"}),
        frozenset({"f1", "f2"}),
    }
    pd.testing.assert_frame_equal(pairs, evaluation.pair_questions(questions, per_domain=5, seed=0))


def test_scoring_keeps_the_generation_order_and_marks_unparsed_outputs(questions):
    generations = pd.DataFrame(
        {"question_id": ["f2", "a1"], "raw_output": ["Answer: Shakespeare", "Answer: 4\nConfidence: 0.9"]}
    )
    scored = evaluation.score_confidence_outputs(generations, questions, get_matcher("exact"), "base")
    assert scored["question_id"].tolist() == ["f2", "a1"]
    assert scored["correct"].tolist() == [True, True] and scored["parsed"].tolist() == [False, True]
    assert np.isnan(scored.loc[0, "confidence"]) and scored.loc[1, "confidence"] == 0.9


def test_outputs_of_two_models_are_refused():
    with pytest.raises(ValueError, match="outputs of one model"):
        evaluation.model_of(pd.DataFrame({"model": ["base", "metacog"]}))


def test_consistency_figure_is_built_without_pyplot():
    consistency = pd.DataFrame({"domain": ["x", "x", "y"], "consistency": [0.1, 0.9, 0.5]})
    bins = pd.DataFrame({"lower": [0.0, 0.5], "upper": [0.5, 1.0], "accuracy": [np.nan, 0.75], "n_questions": [0, 4]})
    figure = consistency_figure(consistency, bins)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert [ax.get_title() for ax in figure.axes] == ["Consistency by domain", "Target confidence source"]
    assert [text.get_text() for text in figure.axes[1].texts] == ["n=4"]
