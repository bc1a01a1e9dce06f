"""Question generators, real-dataset loaders on fixture files, and schema validation."""

import json

import pandas as pd
import pytest

from metasyn.questions import QUESTION_COLUMNS, answer_type, validate_questions
from metasyn.questions.generated import (
    arithmetic_questions,
    factual_questions,
    multiple_choice_questions,
)
from metasyn.questions.loaders import load_gsm8k, load_mmlu_pro, load_triviaqa
from metasyn.questions.sources import load_source


def test_arithmetic_answers_are_correct_and_seeded():
    questions = arithmetic_questions(30, seed=1)
    for text, answer in zip(questions["question"], questions["answer"]):
        left, word, right = text.removeprefix("What is ").removesuffix("?").split(" ")
        expected = {"plus": int(left) + int(right), "minus": int(left) - int(right), "times": int(left) * int(right)}[
            word
        ]
        assert int(answer) == expected >= 0
    assert questions.equals(arithmetic_questions(30, seed=1))


def test_multiple_choice_letter_points_at_the_listed_correct_option():
    questions = multiple_choice_questions(None, seed=0)
    first = questions.iloc[0]
    assert first["question"] == "What is the capital of France?"
    assert first["choices"]["ABCD".index(first["answer"])] == "Paris"
    assert questions["answer"].nunique() > 1  # positions are shuffled


def test_factual_questions_carry_aliases():
    questions = factual_questions(None)
    hamlet = questions[questions["question"] == "Who wrote the play Hamlet?"].iloc[0]
    assert "Shakespeare" in hamlet["aliases"]


def test_shipped_sets_hold_160_distinct_well_formed_questions_each():
    multiple_choice, factual = multiple_choice_questions(None, seed=0), factual_questions(None)
    for questions in (multiple_choice, factual):
        assert len(questions) == 160 and questions["question"].str.lower().is_unique
    for choices in multiple_choice["choices"]:  # the correct option and exactly three distractors, all different
        assert len(choices) == 4 == len({choice.strip().lower() for choice in choices})
    for aliases in factual["aliases"]:  # one letter alone would match as a word inside wrong answers
        assert aliases and len(set(aliases)) == len(aliases)
        assert all(alias.strip() and not (len(alias.strip()) == 1 and alias.strip().isalpha()) for alias in aliases)


def test_validate_rejects_unknown_domain_empty_and_duplicates():
    good = arithmetic_questions(3, seed=0)
    with pytest.raises(ValueError, match="Unknown question domain 'astrology'"):
        validate_questions(good.assign(domain="astrology"))
    with pytest.raises(ValueError, match="empty"):
        validate_questions(good.iloc[:0])
    with pytest.raises(ValueError, match="unique"):
        validate_questions(pd.concat([good, good]))
    assert answer_type("gsm8k") == "number"


def test_unknown_source_names_the_available_ones():
    with pytest.raises(ValueError, match="Unknown question source 'nope'.*arithmetic"):
        load_source("nope", {}, seed=0)


def _write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(record) for record in records))
    return str(path)


def test_triviaqa_loader_uses_aliases(tmp_path):
    record = {
        "question": "Which Lloyd Webber musical premiered in the US on 10th December 1993?",
        "question_id": "tc_33",
        "question_source": "http://www.triviacountry.com/",
        "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
        "search_results": {"description": [], "filename": [], "rank": [], "title": [], "url": [], "search_context": []},
        "answer": {
            "aliases": ["Sunset Blvd", "Sunset Boulevard"],
            "normalized_aliases": ["sunset boulevard", "sunset blvd"],
            "matched_wiki_entity_name": "",
            "normalized_matched_wiki_entity_name": "",
            "normalized_value": "sunset boulevard",
            "type": "WikipediaEntity",
            "value": "Sunset Boulevard",
        },
    }
    questions = load_triviaqa(_write_jsonl(tmp_path / "tqa.jsonl", [record]))
    assert list(questions.columns) == QUESTION_COLUMNS
    row = questions.iloc[0]
    assert row["id"] == "triviaqa-tc_33" and row["answer"] == "Sunset Boulevard"
    assert {"Sunset Blvd", "sunset blvd"} <= set(row["aliases"])


def test_gsm8k_loader_reads_final_answer(tmp_path):
    records = [{"question": "Natalia sold clips...", "answer": "She sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072"}]
    questions = load_gsm8k(_write_jsonl(tmp_path / "gsm.jsonl", records))
    assert questions.iloc[0]["answer"] == "1072"
    with pytest.raises(ValueError, match="no '#### <number>'"):
        load_gsm8k(_write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no final"}]))


def test_mmlu_pro_loader_keeps_ten_options(tmp_path):
    record = {
        "question_id": 70,
        "question": "Typical advertising regulatory bodies suggest...",
        "options": [f"option {i}" for i in range(10)],
        "answer": "I",
        "answer_index": 8,
        "cot_content": "",
        "category": "business",
        "src": "ori_mmlu-business_ethics",
    }
    questions = load_mmlu_pro(_write_jsonl(tmp_path / "mmlu.jsonl", [record]))
    row = questions.iloc[0]
    assert row["answer"] == "I" and len(row["choices"]) == 10 and row["domain"] == "mmlu_pro"


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gsm8k(str(tmp_path / "absent.jsonl"))
