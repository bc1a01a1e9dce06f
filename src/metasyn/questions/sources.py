"""Named question sources, as configured under ``data_prep.sources`` in the parameters."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from metasyn.questions.generated import (
    arithmetic_questions,
    factual_questions,
    multiple_choice_questions,
)
from metasyn.questions.loaders import load_gsm8k, load_mmlu_pro, load_triviaqa

_GENERATED: dict[str, Callable[..., pd.DataFrame]] = {
    "arithmetic": lambda count, seed: arithmetic_questions(count, seed),
    "multiple_choice": lambda count, seed: multiple_choice_questions(count, seed),
    "factual": lambda count, seed: factual_questions(count),
}
_LOADED: dict[str, Callable[..., pd.DataFrame]] = {
    "triviaqa": load_triviaqa,
    "gsm8k": load_gsm8k,
    "mmlu_pro": load_mmlu_pro,
}
# The source names by kind: a generated set takes only ``count``; a loaded dataset also its loader's arguments.
GENERATED_SOURCES, LOADED_SOURCES = tuple(_GENERATED), tuple(_LOADED)


def load_source(name: str, options: dict, seed: int) -> pd.DataFrame:
    """Questions of one source; ``count`` questions drawn at random (seeded) from a loaded dataset."""
    options = dict(options)
    count = options.pop("count", None)
    if name in _GENERATED:
        return _GENERATED[name](count, seed)
    if name not in _LOADED:
        raise ValueError(f"Unknown question source {name!r}; available: {sorted(_GENERATED) + sorted(_LOADED)}.")
    questions = _LOADED[name](**options)
    return questions.sample(n=min(count, len(questions)), random_state=seed) if count else questions
