"""Reading confidences, pairwise choices and answers off messy model outputs (metasyn.lm.answers)."""

from __future__ import annotations

import pytest

from metasyn.lm.answers import (
    answer_wording,
    check_matcher,
    contains_match,
    exact_match,
    extract_answer,
    get_matcher,
    normalize_number,
    normalize_text,
    parse_confidence,
    parse_preference,
    preference_settled,
    score_answer,
    score_answers,
)
from metasyn.lm.prompts import confidence_completion, pairwise_completion


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Confidence: 85%", 0.85),
        ("0.7", 0.7),
        ("conf=.9", 0.9),
        ("Answer: 42\nConfidence: 0.90", 0.9),
        ("Answer: Paris\n\nconfidence level: 0.3", 0.3),
        ("CONFIDENCE:0.4", 0.4),
        ("My confidence is 70%", 0.7),
        ("Confidence: 0.85.", 0.85),
        ("Answer: 12\nConfidence: 95 percent", 0.95),
        ("Confidence: 1", 1.0),
        ("Confidence: 0", 0.0),
        ("85%", 0.85),
    ],
)
def test_parse_confidence_reads_messy_outputs(output, expected):
    assert parse_confidence(output) == pytest.approx(expected)


@pytest.mark.parametrize(
    "output",
    [
        "Answer: 42",  # missing
        "",
        "Confidence: high",
        "Confidence: 120%",  # out of range
        "I am not sure about this one.",
    ],
)
def test_parse_confidence_gives_none_when_absent_or_out_of_range(output):
    assert parse_confidence(output) is None


def test_a_bare_integer_answer_is_not_a_confidence():
    assert parse_confidence("7") is None


def test_decimal_comma_confidence_is_not_read_as_zero():
    assert parse_confidence("Confidence: 0,8") == pytest.approx(0.8)


def test_a_decimal_above_one_is_out_of_range():
    assert parse_confidence("Confidence: 1.5") is None


# ------------------------------------------------------------------ real model output, one class at a time


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("**Confidence:** 0.9", 0.9),
        ("Confidence: **0.9**", 0.9),
        ("*Confidence*: 85%", 0.85),
        ("__Confidence__: 0.4", 0.4),
    ],
)
def test_markdown_emphasis_around_a_confidence_label_or_value_is_ignored(output, expected):
    assert parse_confidence(output) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Answer: Confucius\nConfidence: 0.6", 0.6),
        ("I'm confident that it is Paris.\nConfidence: 0.7", 0.7),
        ("Answer: conference room\nconf = .2", 0.2),
        ("Confidence: high\nConfidence: 0.3", 0.3),  # the first label followed by a number wins
    ],
)
def test_a_conf_word_before_the_confidence_line_does_not_hide_it(output, expected):
    assert parse_confidence(output) == pytest.approx(expected)


@pytest.mark.parametrize(
    "output",
    ["Answer: Confucius", "I'm confident that it is 7.", "Answer: 7 (confident)", "Confidence score (0-1): high"],
)
def test_a_conf_word_without_a_labelled_number_is_no_confidence(output):
    assert parse_confidence(output) is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Confidence score (0-1): .7", 0.7),
        ("Answer: 4\nConfidence score (0-1): 0.35", 0.35),
        ("Confidence (0 to 1): 0.2", 0.2),
        ("Confidence [0-1]: 1", 1.0),
    ],
)
def test_a_range_hint_after_the_label_is_not_read_as_the_confidence(output, expected):
    assert parse_confidence(output) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Confidence: 9/10", 0.9),
        ("Confidence: 8 out of 10", 0.8),
        ("Confidence: 80 out of 100", 0.8),
        ("9/10", 0.9),
        ("Confidence: 11/10", None),  # out of range
        ("Confidence: 3/0", None),  # no probability, and no crash
        ("Answer: 3/4 of the pie", None),  # a fraction without a label is an answer
    ],
)
def test_fractions_of_ten_and_out_of_phrases(output, expected):
    assert parse_confidence(output) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("I am about 90% confident", 0.9),
        ("Answer: B. I'm 75 percent sure.", 0.75),
        ("I am 150% confident", None),  # out of range
        ("The tax is 20% of income; I am confident.", None),  # the percentage is not the one stated as confidence
    ],
)
def test_a_percentage_stated_before_confident(output, expected):
    assert parse_confidence(output) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("output", "kind", "expected"),
    [
        ("**Answer:** B", "letter", "B"),
        ("Answer: **B**", "letter", "B"),
        ("**Answer:** 42\n**Confidence:** 0.9", "number", "42"),
        ("**Answer:** *Paris*", "text", "paris"),
    ],
)
def test_markdown_emphasis_around_an_answer_label_or_value_is_ignored(output, kind, expected):
    assert extract_answer(output, kind) == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Answer: b", "B"),
        ("Answer: (c) Paris", "C"),
        ("Answer: d.", "D"),
        ("Answer: a dog", None),  # the article, not option A
        ("b", None),  # without a label a lower-case letter is not read
        ("a. cat", None),
    ],
)
def test_lower_case_option_letters_after_an_answer_label(output, expected):
    assert extract_answer(output, "letter") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("The correct option is B)", "B"),
        ("I choose option C.", "C"),
        ("The answer is (D)", "D"),
        ("I think the answer is a dog", None),  # a lower-case word after "answer is" is not a letter
        ("The correct option is Bob's", None),
    ],
)
def test_an_option_named_in_a_phrase(output, expected):
    assert extract_answer(output, "letter") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Answer: 3 + 4 = 7", "7"),
        ("Answer: 3 * 4 = **12**\nConfidence: 0.9", "12"),
        ("Answer: 12 (since 3 x 4 = 12)", "12"),
        ("Answer: 7, confidence = 0.9", "7"),  # the "=" of a confidence on the same line is not a result
        ("Answer: 7 apples, 3 pears", "7"),  # no worked line: the first number, as before
    ],
)
def test_the_result_of_a_worked_answer_line(output, expected):
    assert extract_answer(output, "number") == expected


@pytest.mark.parametrize(
    ("output", "kind", "expected"),
    [
        ("37 + 13 = 50", "number", "37 + 13 = 50"),  # the working a small model answers with is kept
        ("598 + 130 = 179.\n\nThe answer is 179.", "number", "598 + 130 = 179."),
        ("**Answer:** The capital of Egypt is Cairo. Confidence: 0.9", "text", "The capital of Egypt is Cairo."),
        ("Answer: B. Paris\nConfidence: 0.4", "letter", "B. Paris"),
        ("Let me think.\n\n37 + 13 = 50", "number", None),  # the answer is not on the line that would be stated
        ("Answer: ?", "number", None),  # no answer at all
        # Alone on its line it reads 16, after a pairwise label ("Answer 1: ...") 2: not stated as worded.
        ("2 times 8 is 16.", "number", None),
    ],
)
def test_the_answer_as_worded_is_its_line_when_that_line_reads_back_as_the_answer(output, kind, expected):
    assert answer_wording(output, kind) == expected
    if expected is not None:
        answer = extract_answer(output, kind)
        assert extract_answer(confidence_completion(expected, 0.5), kind) == answer
        assert extract_answer(pairwise_completion(1, expected, "x"), kind) == answer


def test_markdown_emphasis_around_a_pairwise_choice_is_ignored():
    assert parse_preference("**More confident:** 2") == 2


@pytest.mark.parametrize(
    "output",
    [
        "Confidence" + " " * 5000 + "x",
        "Confidence (0-1)" + " " * 5000 + ":" + " " * 5000,
        "More confident" + " " * 5000,
    ],
)
def test_long_runs_of_spaces_after_a_label_are_read_in_linear_time(output):
    # Regression: adjacent optional whitespace in the label pattern backtracked as n**5 (minutes at 100 spaces).
    assert parse_confidence(output) is None and parse_preference(output) is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("More confident: 2\nAnswer 1: 7\nAnswer 2: 12", 2),
        ("more confident: question 1", 1),
        ("More confident = 1", 1),
        ("I cannot tell which one.", None),
        ("", None),
    ],
)
def test_parse_preference(output, expected):
    assert parse_preference(output) == expected


@pytest.mark.parametrize(
    ("output", "kind", "expected"),
    [
        ("Answer: 42\nConfidence: 0.9", "number", "42"),
        ("Answer: 1,200\nConfidence: 0.9", "number", "1200"),
        ("Answer: $1,200.50", "number", "1200.5"),
        ("Answer: -3", "number", "-3"),
        ("Answer: 7.0", "number", "7"),
        ("37 times 8 equals 296.", "number", "296"),  # no answer line: the last number
        ("Answer: B\nConfidence: 0.8", "letter", "B"),
        ("Answer: (C) Paris", "letter", "C"),
        ("B. Jupiter", "letter", "B"),
        ("I think the answer is D", "letter", "D"),
        ("I think so", "letter", None),  # a capital "I" starting a sentence is not option I
        ("no idea", "letter", None),
        ("Answer: The Eiffel Tower!\nConfidence: 0.5", "text", "eiffel tower"),
        ("", "text", None),
    ],
)
def test_extract_answer(output, kind, expected):
    assert extract_answer(output, kind) == expected


def test_a_wordy_numeric_answer_is_not_replaced_by_the_confidence():
    assert extract_answer("Answer: seven\nConfidence: 0.9", "number") is None


def test_extract_answer_refuses_unknown_types():
    with pytest.raises(ValueError, match="Unknown answer type"):
        extract_answer("Answer: 3", "date")


def test_normalisation_and_matching():
    assert normalize_text("The  Eiffel_Tower!") == "eiffel tower"
    assert normalize_number("1,200.0") == "1200" and normalize_number("ten") is None
    assert exact_match("eiffel tower", "Eiffel Tower", [], "text")
    assert exact_match("paris", "Paris, France", ["Paris"], "text")
    assert exact_match("1200", "1,200", [], "number")
    assert exact_match("B", "b", [], "letter")
    assert not exact_match(None, "B", [], "letter")
    assert not exact_match("london", "Paris", ["Paris"], "text")
    assert get_matcher("exact") is exact_match
    with pytest.raises(ValueError, match=r"registered matchers: \['contains', 'exact', 'nli'\]"):
        get_matcher("vibes")


def test_a_matcher_is_chosen_by_name_or_by_settings_that_name_it():
    settings = {"name": "contains", "nli": {"model": None, "batch_size": 32, "device": "auto"}}
    assert get_matcher(settings) is contains_match  # the options of a matcher not chosen are not read
    check_matcher(settings)
    with pytest.raises(ValueError, match="lack a 'name'"):
        get_matcher({"nli": {"model": None}})
    with pytest.raises(ValueError, match="Unknown answer matcher 'vibes'"):
        check_matcher({"name": "vibes"})


def test_score_answer_reads_by_the_domains_answer_type_and_applies_the_matcher():
    factual = {"domain": "factual", "answer": "Paris", "aliases": ["Paris"]}
    assert score_answer("Answer: the capital is Paris", factual, get_matcher("exact")) == ("capital is paris", False)
    assert score_answer("Answer: the capital is Paris", factual, get_matcher("contains")) == ("capital is paris", True)
    arithmetic = {"domain": "arithmetic", "answer": "1,200", "aliases": []}
    assert score_answer("Answer: 1200.0\nConfidence: 0.9", arithmetic, exact_match) == ("1200", True)
    assert score_answer("I don't know", {"domain": "multiple_choice", "answer": "B", "aliases": []}, exact_match) == (
        None,
        False,
    )
    with pytest.raises(ValueError, match="Unknown question domain"):
        score_answer("Answer: 3", {"domain": "astrology", "answer": "3", "aliases": []}, exact_match)


@pytest.mark.parametrize(
    ("output", "answer_type", "expected"),
    [
        ("Answer: Paris, Confidence: 0.9", "text", "paris"),
        ("Answer: B Confidence: 0.9", "letter", "B"),
        ("Answer: 42; confidence = 0.7", "number", "42"),
        ("Answer: Leonardo da Vinci | Confidence score (0-1): .7", "text", "leonardo da vinci"),
        ("Answer: I'm confident it is Paris", "text", "i m confident it is paris"),  # no label: words kept
    ],
)
def test_a_confidence_label_on_the_answer_line_ends_the_answer(output, answer_type, expected):
    assert extract_answer(output, answer_type) == expected


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Confidence: 1", 1.0),  # a whole 1 is a probability, not 1%
        ("Confidence: 2", 0.02),  # from 2 up a whole number after the label is a percentage
        ("Confidence: 100", 1.0),  # 100 is the top of that range
        ("Confidence: 101", None),  # and 101 is past it
    ],
)
def test_a_labelled_whole_number_above_one_is_a_percentage_up_to_100(output, expected):
    assert parse_confidence(output) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("paris", True),
        ("paris is capital", True),  # the alias at the start
        ("capital is paris", True),  # at the end
        ("capital is paris france", True),  # inside
        ("parisian", False),  # a longer word on the right is not the alias
        ("comparis", False),  # nor one on the left
        ("capital is parisian", False),
        (None, False),
    ],
)
def test_contains_match_needs_the_alias_as_whole_words_on_both_sides(predicted, expected):
    assert contains_match(predicted, "Paris", ["City of Light"], "text") is expected


def test_contains_match_matches_a_multi_word_alias_only_whole():
    assert contains_match("it is city of light", "Paris", ["City of Light"], "text")
    assert not contains_match("it is city of lights", "Paris", ["City of Light"], "text")


def test_contains_match_compares_numbers_and_letters_canonically_not_as_words():
    assert contains_match("1200", "1,200", [], "number")  # as words "1 200" would not be in "1200"
    assert contains_match("12", "12", [], "number") and not contains_match("13", "12", [], "number")
    assert contains_match("A", "a", [], "letter")  # as words, "a" is an article and normalises away
    assert not contains_match(None, "12", [], "number")


def test_a_worked_answer_line_gives_the_number_after_its_last_equals_sign():
    assert extract_answer("Answer: x = 2 * 3 = 6", "number") == "6"


def test_score_answers_refuses_outputs_and_questions_of_different_lengths():
    question = {"domain": "arithmetic", "answer": "2", "aliases": []}
    with pytest.raises(ValueError, match="zip"):
        score_answers(["Answer: 2", "Answer: 3"], [question], exact_match)


def test_score_answers_refuses_a_batch_matcher_that_returns_too_few_verdicts():
    class ShortMatcher:
        def __call__(self, *case):
            return True

        def match_many(self, cases):
            return [True] * (len(cases) - 1)

    question = {"domain": "arithmetic", "answer": "2", "aliases": []}
    with pytest.raises(ValueError, match="zip"):
        score_answers(["Answer: 2", "Answer: 2"], [question, question], ShortMatcher())
    assert score_answers(["Answer: 2", "Answer: 3"], [question, question], exact_match) == [("2", True), ("3", False)]


@pytest.mark.parametrize(
    ("text", "settled"),
    [("More confident: 1", False), ("More confident: 1\n", True), ("More confident: 2 (question 2)\nAnswer 1", True),
     ("More confident: 12\n", False), ("**More confident:** question 1\n", True), ("1\n", False)],
)  # fmt: skip
def test_a_pairwise_choice_is_settled_once_its_line_has_ended(text, settled):
    assert preference_settled(text) is settled
