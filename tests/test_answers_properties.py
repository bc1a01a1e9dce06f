"""The answer parsers never raise and never return an impossible value, whatever the text, and a choice or
judgment that generation stopped at as settled is the one the whole text gives (hypothesis)."""

from __future__ import annotations

import pytest

from metasyn.lm.answers import extract_answer, parse_confidence, parse_preference, preference_settled
from metasyn.metacognition.judgment import judgment_settled, parse_judgment
from metasyn.questions import OPTION_LETTERS

hypothesis = pytest.importorskip("hypothesis")  # a dev extra (pyproject.toml)
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Pieces of the formats the parsers look for, so that random texts reach their number and label branches.
FRAGMENTS = ["Answer", "Confidence", "conf", "score", "(0-1)", ":", "=", " ", "\n", "**", "__", "%", "percent",
             "/", "out of", "confident", "option is", "(", ")", "0", "1", "9", "10", ".", ",", "$", "-", "B", "b",
             "More confident", "question", "2", "Judgment", "Judgement", "can", "cannot", "not", "uncertain", "'t",
             "’", "_"]  # fmt: skip
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


@pytest.mark.parametrize(
    ("parse", "settled"), [(parse_preference, preference_settled), (parse_judgment, judgment_settled)]
)
@given(model_like_text, model_like_text)
def test_a_settled_prefix_reads_as_the_whole_text(parse, settled, prefix, continuation):
    if settled(prefix):
        assert parse(prefix) is not None and parse(prefix + continuation) == parse(prefix)
