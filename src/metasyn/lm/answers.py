"""Reading answers and confidences off model outputs, and scoring them against gold answers.

Free text follows TriviaQA's official evaluation: normalise (lower case, punctuation and underscores to
spaces, articles removed, whitespace collapsed), then exact match against every alias.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence

from metasyn.questions import answer_type as domain_answer_type

_ANSWER_LINE = re.compile(r"answer\s*(?:\d\s*)?[:=]\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?")
_LETTER_PATTERNS = [
    # "B", "(B)", "B. text", "B) text"; a bare capital followed by a word is not a letter ("I think ...").
    re.compile(r"^\(?([A-J])\)?(?:[.):,]|$)"),
    re.compile(r"\b(?:option|choice|answer is)\s*\(?([A-J])\b", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
]
# A decimal comma ("0,8") is read as a decimal point.
_CONFIDENCE = re.compile(
    r"conf(?:idence)?\s*(?:level|score)?\s*(?:is|of)?\s*[:=]?\s*(\d*(?:[.,]\d+)?)\s*(%)?", re.IGNORECASE
)
_BARE_PROBABILITY = re.compile(r"^\s*(\d*(?:[.,]\d+)?)\s*(%)?\s*$")
# Where a stated confidence begins: numbers after it are not the answer.
_CONFIDENCE_START = re.compile(r"(?:more\s+)?conf(?:ident|idence)?\b", re.IGNORECASE)
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


def _answer_span(output: str) -> str:
    match = _ANSWER_LINE.search(output)
    span = match.group(1) if match else output.strip()
    return span.splitlines()[0].strip() if span.strip() else ""


def extract_answer(output: str, answer_type: str) -> str | None:
    """The answer in a model output, canonicalised for its type; None when nothing can be read."""
    span = _answer_span(output)
    if answer_type == "number":
        # The first number on the "Answer:" line; without one, the last number before any stated
        # confidence (where worked solutions end).
        if _ANSWER_LINE.search(output):
            candidates = _NUMBER.findall(span)[:1]
        else:
            candidates = _NUMBER.findall(_CONFIDENCE_START.split(output)[0])[-1:]
        return normalize_number(candidates[0]) if candidates else None
    if answer_type == "letter":
        for pattern in _LETTER_PATTERNS:
            match = pattern.search(span)
            if match:
                return match.group(1).upper()
        return None
    if answer_type == "text":
        normalized = normalize_text(span)
        return normalized or None
    raise ValueError(f"Unknown answer type {answer_type!r}: use 'number', 'letter' or 'text'.")


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


# A matcher decides whether an extracted answer is right; an NLI-based equivalence matcher can be plugged in
# through the same signature (not used by default: no NLI model is available offline).
Matcher = Callable[[str | None, str, Sequence[str], str], bool]

MATCHERS: dict[str, Matcher] = {"exact": exact_match, "contains": contains_match}


def get_matcher(name: str) -> Matcher:
    """The matcher registered under ``name``."""
    if name not in MATCHERS:
        raise ValueError(f"Unknown answer matcher {name!r}; registered matchers: {sorted(MATCHERS)}.")
    return MATCHERS[name]


def score_answer(output: str, question: Mapping, matcher: Matcher) -> tuple[str | None, bool]:
    """The answer read off ``output`` (by the type of the question's domain) and whether ``matcher`` accepts it.

    ``question`` is a row of the question schema (``domain``, ``answer``, ``aliases``); an unreadable answer is
    None, which the registered matchers score as wrong.
    """
    kind = domain_answer_type(question["domain"])
    answer = extract_answer(output, kind)
    return answer, matcher(answer, question["answer"], list(question["aliases"]), kind)


def parse_confidence(output: str) -> float | None:
    """A stated confidence in [0, 1] (``0.7``, ``85%``, ``conf=.9``); None when absent or out of range."""
    labelled = _CONFIDENCE.search(output)
    match = labelled or _BARE_PROBABILITY.match(output)
    if match is None or not match.group(1):
        return None
    number = match.group(1).replace(",", ".")
    value = float(number)
    # "85%" is a percentage; so is a whole number up to 100 after a confidence label ("Confidence: 85").
    # A bare "7" is an answer, not a confidence, and "1.5" is out of range rather than 1.5%.
    if match.group(2) or (labelled and "." not in number and 1 < value <= 100):
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def parse_preference(output: str) -> int | None:
    """The question (1 or 2) a pairwise answer says it is more confident about."""
    match = re.search(r"more confident\s*[:=]?\s*(?:question\s*)?([12])\b", output, re.IGNORECASE)
    return int(match.group(1)) if match else None
