"""Reading answers and confidences off model outputs, and scoring them against gold answers.

Markdown emphasis (``**Answer:** B``, ``Confidence: **0.9**``) is ignored everywhere. What is read:

- answers (``extract_answer``): the text after an ``Answer:`` label, else the output itself. A number is the
  first number on the answer line, or the result of a worked line (``Answer: 3 + 4 = 7`` is 7); without a
  label, the last number before any stated confidence. An option letter is a leading ``B``, ``(B)``,
  ``B.`` or ``B)`` (lower case too after an answer label: ``Answer: b``), or one named in a phrase
  (``the correct option is B)``, ``the answer is (D)``).
- confidences (``parse_confidence``): the first number after a confidence label (``Confidence:``,
  ``conf=``, ``confidence level is``, ``Confidence score (0-1):``), else a percentage stated before
  ``confident``/``sure``/``certain`` (``I am about 90% confident``), else an output that is only a number.
  Numbers may be ``0.85``, ``.7``, ``0,8`` (decimal comma), ``85%``, ``95 percent``, ``9/10``, ``8 out of
  10``, or a whole number up to 100 after a label (``Confidence: 85``); a value outside [0, 1] is rejected.
- pairwise choices (``parse_preference``): ``More confident: 2`` or ``More confident: question 1``.

Unreadable output gives None. Free text follows TriviaQA's official evaluation: normalise (lower case,
punctuation and underscores to spaces, articles removed, whitespace collapsed), then exact match against
every alias. Matchers, chosen by ``get_matcher`` from globals.yml's ``answer_matcher``: ``exact`` (TriviaQA's
exact match), ``contains`` (an alias as whole words inside the answer) and ``nli`` (``contains``, then
bidirectional entailment for free text; ``metasyn.lm.nli``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

from metasyn.lm import nli
from metasyn.questions import OPTION_LETTERS
from metasyn.questions import answer_type as domain_answer_type

# Bold and italic markers: "**Confidence:** 0.9" is "Confidence: 0.9".
EMPHASIS = re.compile(r"\*+|_{2,}")
_ANSWER_LINE = re.compile(r"answer\s*(?:\d\s*)?[:=]\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?")
_OPTION = f"[{OPTION_LETTERS}]"
# "B", "(B)", "B. text", "B) text"; a bare capital followed by a word is not a letter ("I think ...").
_LEADING_LETTER = re.compile(rf"^\(?({_OPTION})\)?(?:[.):,]|$)")
# After an answer label a lower-case letter is an option too ("Answer: b"); elsewhere "a" and "i" are words.
_LABELLED_LEADING_LETTER = re.compile(_LEADING_LETTER.pattern, re.IGNORECASE)
_LETTER_PHRASES = [
    # "the correct option is B)", "the answer is (D)"; the letter itself must be a capital ("the answer is a dog").
    re.compile(rf"\b(?:(?:option|choice)(?:\s+is)?|answer\s+is)\s*\(?((?-i:{_OPTION}))\b", re.IGNORECASE),
    re.compile(rf"\(({_OPTION})\)"),
]
# A stated probability: "0.85", ".7", "0,8" (decimal comma), "85%", "95 percent", "9/10", "8 out of 10".
_STATED_NUMBER = (
    r"(?P<number>\d+(?:[.,]\d+)?|[.,]\d+)"
    r"(?:\s*(?P<percent>%|percent\b)|\s*(?:/|out\s+of)\s*(?P<denominator>\d+))?"
)
# A confidence label and the number it states. The label is a whole word, so an answer "Confucius" is not
# one, and a label must be followed by a number, so "I'm confident that ..." is not either. Each optional
# part carries its own leading whitespace: adjacent optional `\s*` would backtrack polynomially on long
# runs of spaces.
_CONFIDENCE = re.compile(
    r"\bconf(?:idence)?\b(?:\s*(?:level|score|rating)\b)?"
    r"(?:\s*[(\[]\s*0\s*(?:-|–|to)\s*1(?:00)?\s*[)\]])?"  # a range hint: "Confidence score (0-1): .7"
    r"(?:\s*\b(?:is|of)\b)?(?:\s*[:=])?\s*" + _STATED_NUMBER,
    re.IGNORECASE,
)
# "I am about 90% confident", "95 percent sure". It starts where a number starts, so a long run of digits is
# tried once, not once per digit.
_PERCENT_PHRASE = re.compile(
    r"(?<![\d.,])(?P<number>\d+(?:[.,]\d+)?)\s*(?P<percent>%|percent)\s*(?:confident|sure|certain)\b",
    re.IGNORECASE,
)
_BARE_PROBABILITY = re.compile(r"^\s*" + _STATED_NUMBER + r"\s*$", re.IGNORECASE)
# Where a stated confidence begins: numbers after it are not the answer.
_CONFIDENCE_START = re.compile(r"(?:more\s+)?conf(?:ident|idence)?\b", re.IGNORECASE)
# A confidence label on the answer's own line ("Answer: Paris, Confidence: 0.9") ends the answer. Only a label
# with its colon, equals sign or range hint: "Answer: I'm confident it is Paris" keeps its words.
_SAME_LINE_CONFIDENCE = re.compile(r"[\s,;|]*\bconf(?:idence)?\b(?:\s*(?:level|score|rating)\b)?\s*[:=(\[].*$", re.I)
_PUNCTUATION = set(string.punctuation) | {"‘", "’", "´", "`"}


def normalize_text(text: str) -> str:
    """TriviaQA's answer normalisation."""
    text = text.lower().replace("_", " ")
    text = "".join(" " if character in _PUNCTUATION else character for character in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalize_number(text: str) -> str | None:
    """Canonical text of a number (``"1,200.0"`` -> ``"1200"``), or None when it is not one."""
    try:
        value = float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def _answer_span(output: str) -> tuple[str, bool]:
    """The rest of the answer label's line (else the output's first line) up to a confidence label on that
    line, and whether an answer label was found."""
    match = _ANSWER_LINE.search(output)
    span = match.group(1) if match else output.strip()
    line = span.splitlines()[0] if span.strip() else ""
    return _SAME_LINE_CONFIDENCE.sub("", line).strip(), match is not None


def extract_answer(output: str, answer_type: str) -> str | None:
    """The answer in a model output, canonicalised for its type; None when nothing can be read."""
    output = EMPHASIS.sub("", output)
    span, labelled = _answer_span(output)
    if answer_type == "number":
        if labelled:
            # The first number of the answer line's result: a worked line ends in "= <result>", and a
            # confidence stated on the same line is not part of it.
            result = _CONFIDENCE_START.split(span)[0].rsplit("=", 1)[-1]
            candidates = _NUMBER.findall(result)[:1]
        else:
            # The last number before any stated confidence, where worked solutions end.
            candidates = _NUMBER.findall(_CONFIDENCE_START.split(output)[0])[-1:]
        return normalize_number(candidates[0]) if candidates else None
    if answer_type == "letter":
        leading = _LABELLED_LEADING_LETTER if labelled else _LEADING_LETTER
        for pattern in [leading, *_LETTER_PHRASES]:
            match = pattern.search(span)
            if match:
                return match.group(1).upper()
        return None
    if answer_type == "text":
        normalized = normalize_text(span)
        return normalized or None
    raise ValueError(f"Unknown answer type {answer_type!r}: use 'number', 'letter' or 'text'.")


def answer_wording(output: str, answer_type: str) -> str | None:
    """The answer as the model wrote it: its answer line without label, emphasis or a same-line confidence
    ("37 + 13 = 50", "The capital of Egypt is Cairo"), when that line alone reads back as the output's answer;
    None when the answer came from elsewhere in the output, or there is none."""
    answer = extract_answer(output, answer_type)
    span, _ = _answer_span(EMPHASIS.sub("", output))
    # Read back as a training completion states it: alone on its line (the single-question task) and after a
    # label ("Answer 1: ...", the pairwise task).
    readings = {extract_answer(text, answer_type) for text in (span, f"Answer: {span}")}
    return span if answer is not None and readings == {answer} else None


def exact_match(predicted: str | None, gold: str, aliases: Sequence[str], answer_type: str) -> bool:
    """Default matcher: canonical equality (numbers, letters) or normalised exact match to any alias (text)."""
    if predicted is None:
        return False
    if answer_type == "text":
        return predicted in {normalize_text(alias) for alias in [gold, *aliases]}
    if answer_type == "number":
        return predicted == normalize_number(gold)
    return predicted == gold.strip().upper()


def contains_match(predicted: str | None, gold: str, aliases: Sequence[str], answer_type: str) -> bool:
    """Like ``exact_match``, but free text also matches when a normalised alias appears as whole words in it.

    Small models answer in sentences ("the capital of egypt is cairo"); exact match would score all of them
    wrong, so this is the project's default for free text. Numbers and letters are matched exactly.
    """
    if predicted is None or answer_type != "text":
        return exact_match(predicted, gold, aliases, answer_type)
    padded = f" {predicted} "
    return any(f" {alias} " in padded for alias in {normalize_text(alias) for alias in [gold, *aliases]} if alias)


# A matcher decides whether an extracted answer is right: (predicted, gold, aliases, answer_type) -> bool. One
# that also has ``match_many(cases) -> list[bool]`` (a model-based matcher) judges many answers in one call.
Matcher = Callable[[str | None, str, Sequence[str], str], bool]

MATCHERS: dict[str, Matcher] = {"exact": exact_match, "contains": contains_match}


class ModelMatcher(NamedTuple):
    """A matcher that loads a model: ``load(**options)`` builds it, ``check(**options)`` fails fast without weights."""

    load: Callable[..., Matcher]
    check: Callable[..., None]


# Matchers built from their own options, ``answer_matcher.<name>`` in globals.yml.
MODEL_MATCHERS: dict[str, ModelMatcher] = {
    "nli": ModelMatcher(load=partial(nli.load_nli_matcher, alias_matcher=contains_match), check=nli.check_nli_matcher),
}


def _matcher_choice(settings: str | Mapping) -> tuple[str, Mapping]:
    """(name, that matcher's options) from a bare name or from ``{name: <name>, <name>: {options}}``."""
    if isinstance(settings, str):
        name, options = settings, {}
    elif "name" in settings:
        name, options = settings["name"], settings.get(settings["name"]) or {}
    else:
        raise ValueError(f"Answer matcher settings {dict(settings)} lack a 'name' (e.g. name: contains).")
    if name not in MATCHERS and name not in MODEL_MATCHERS:
        raise ValueError(
            f"Unknown answer matcher {name!r}; registered matchers: {sorted([*MATCHERS, *MODEL_MATCHERS])}."
        )
    return name, options


def get_matcher(settings: str | Mapping) -> Matcher:
    """The matcher that ``settings`` chooses: a registered name, or ``{name: <name>, <name>: {its options}}``."""
    name, options = _matcher_choice(settings)
    return MATCHERS[name] if name in MATCHERS else MODEL_MATCHERS[name].load(**options)


def check_matcher(settings: str | Mapping) -> None:
    """Raise now if ``settings`` choose no registered matcher, or one whose model cannot be loaded (no weights read)."""
    name, options = _matcher_choice(settings)
    if name in MODEL_MATCHERS:
        MODEL_MATCHERS[name].check(**options)


def score_answers(
    outputs: Sequence[str], questions: Sequence[Mapping], matcher: Matcher
) -> list[tuple[str | None, bool]]:
    """``score_answer`` for each output and its question; a matcher with ``match_many`` judges them in one call."""
    kinds = [domain_answer_type(question["domain"]) for question in questions]
    cases = [
        (extract_answer(output, kind), question["answer"], list(question["aliases"]), kind)
        for output, question, kind in zip(outputs, questions, kinds, strict=True)
    ]
    match_many = getattr(matcher, "match_many", None)
    verdicts = match_many(cases) if match_many is not None else [matcher(*case) for case in cases]
    return [(case[0], verdict) for case, verdict in zip(cases, verdicts, strict=True)]


def score_answer(output: str, question: Mapping, matcher: Matcher) -> tuple[str | None, bool]:
    """The answer read off ``output`` (by the type of the question's domain) and whether ``matcher`` accepts it.

    ``question`` is a row of the question schema (``domain``, ``answer``, ``aliases``); an unreadable answer is
    None, which the registered matchers score as wrong.
    """
    return score_answers([output], [question], matcher)[0]


def _stated_probability(match: re.Match, labelled: bool) -> float | None:
    """The probability a ``_STATED_NUMBER`` match states, or None outside [0, 1]."""
    stated = match.groupdict()
    number = stated["number"].replace(",", ".")
    value = float(number)
    if stated.get("denominator") is not None:
        denominator = float(stated["denominator"])
        if denominator == 0:
            return None
        value /= denominator
    # "85%" is a percentage; so is a whole number up to 100 after a confidence label ("Confidence: 85").
    # A bare "7" is an answer, not a confidence, and "1.5" is out of range rather than 1.5%.
    elif stated["percent"] or (labelled and "." not in number and 1 < value <= 100):
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def parse_confidence(output: str) -> float | None:
    """A stated confidence in [0, 1] (formats: the module docstring); None when absent or out of range."""
    output = EMPHASIS.sub("", output)
    labelled = _CONFIDENCE.search(output) or _PERCENT_PHRASE.search(output)
    if labelled:
        return _stated_probability(labelled, labelled=True)
    bare = _BARE_PROBABILITY.match(output)
    return _stated_probability(bare, labelled=False) if bare else None


_PREFERENCE = re.compile(r"more confident\s*(?:[:=]\s*)?(?:question\s*)?([12])\b", re.IGNORECASE)


def parse_preference(output: str) -> int | None:
    """The question (1 or 2) a pairwise answer says it is more confident about."""
    match = _PREFERENCE.search(EMPHASIS.sub("", output))
    return int(match.group(1)) if match else None


def line_settled(label: re.Pattern, output: str) -> bool:
    """Whether the first match of ``label`` in ``output`` (emphasis removed) is followed by a line break.

    For a label whose match cannot span a line break, text after the break can neither extend that match nor
    put an earlier one before it, so what the label reads can no longer change and generation can stop there.
    """
    match = label.search(text := EMPHASIS.sub("", output))
    return match is not None and "\n" in text[match.end() :]


def preference_settled(output: str) -> bool:
    """Whether ``output`` has a pairwise choice that no continuation can change: its ``More confident`` line has
    ended (``line_settled``)."""
    return line_settled(_PREFERENCE, output)
