"""Question sets in one schema: ``id, domain, question, choices, answer, aliases``.

Every generator and loader returns a DataFrame with exactly ``QUESTION_COLUMNS``. ``choices`` is a list of
option texts (empty unless the domain is multiple choice), ``answer`` the gold answer (a number as text, an
option letter, or a free-text answer) and ``aliases`` every accepted free-text answer (empty otherwise).
"""

from __future__ import annotations

import pandas as pd

QUESTION_COLUMNS = ["id", "domain", "question", "choices", "answer", "aliases"]
# Multiple-choice options are lettered in this order, in the questions and in every prompt.
OPTION_LETTERS = "ABCDEFGHIJ"

# How an answer is read off a model's output, per domain. A domain outside this table is an error:
# without an answer type its samples cannot be scored.
DOMAIN_ANSWER_TYPES: dict[str, str] = {
    "arithmetic": "number",
    "gsm8k": "number",
    "multiple_choice": "letter",
    "mmlu_pro": "letter",
    "factual": "text",
    "triviaqa": "text",
}


def answer_type(domain: str) -> str:
    """The answer type (``number``, ``letter`` or ``text``) of a domain, or a clear error for an unknown one."""
    try:
        return DOMAIN_ANSWER_TYPES[domain]
    except KeyError:
        raise ValueError(
            f"Unknown question domain {domain!r}. Known domains: {sorted(DOMAIN_ANSWER_TYPES)}; "
            "add new domains to metasyn.questions.DOMAIN_ANSWER_TYPES with their answer type."
        ) from None


def validate_questions(questions: pd.DataFrame) -> pd.DataFrame:
    """Check a question table's schema, domains and ids; raise a ValueError that says what to fix."""
    if questions.empty:
        raise ValueError("The question set is empty: enable at least one question source in parameters_data_prep.yml.")
    missing = [column for column in QUESTION_COLUMNS if column not in questions.columns]
    if missing:
        raise ValueError(f"Question table lacks columns {missing}; expected {QUESTION_COLUMNS}.")
    for domain in questions["domain"].unique():
        answer_type(domain)
    duplicated = questions["id"][questions["id"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"Question ids must be unique; repeated: {list(duplicated[:5])}.")
    return questions[QUESTION_COLUMNS].reset_index(drop=True)
