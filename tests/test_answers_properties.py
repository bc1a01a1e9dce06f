"""The answer parsers never raise and never return an impossible value, whatever the text (hypothesis)."""

from __future__ import annotations

import pytest

from metasyn.lm.answers import extract_answer, parse_confidence, parse_preference
from metasyn.questions import OPTION_LETTERS

hypothesis = pytest.importorskip("hypothesis")  # a dev extra (pyproject.toml)
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Pieces of the formats the parsers look for, so that random texts reach their number and label branches.
FRAGMENTS = ["Answer", "Confidence", "conf", "score", "(0-1)", ":", "=", " ", "\n", "**", "__", "%", "percent",
             "/", "out of", "confident", "option is", "(", ")", "0", "1", "9", "10", ".", ",", "$", "-", "B", "b",
             "More confident", "question"]  # fmt: skip
model_like_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join)
any_text = st.text() | model_like_text


@given(any_text)
def test_parse_confidence_is_none_or_a_probability(output):
    confidence = parse_confidence(output)
    assert confidence is None or 0.0 <= confidence <= 1.0


@given(any_text)
def test_parse_preference_is_none_or_a_question_number(output):
    assert parse_preference(output) in {None, 1, 2}


@given(any_text)
def test_extract_answer_reads_or_gives_none_for_every_answer_type(output):
    letter = extract_answer(output, "letter")
    assert letter is None or letter in OPTION_LETTERS
    for kind in ("number", "text"):
        answer = extract_answer(output, kind)
        assert answer is None or (isinstance(answer, str) and answer)
