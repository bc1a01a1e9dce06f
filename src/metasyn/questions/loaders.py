"""Loaders for the real datasets of the full study, mapped onto the project's question schema.

Each reads either a local file (``.jsonl``/``.json``/``.parquet``, in the dataset's own schema) or a
Hugging Face dataset already in the local cache; nothing is downloaded when ``HF_DATASETS_OFFLINE=1``.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pandas as pd

from metasyn.questions import QUESTION_COLUMNS

_LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _read(source: str, config: str | None, split: str) -> datasets.Dataset:
    path = Path(source)
    if path.suffix in _LOCAL_FORMATS:
        if not path.is_file():
            raise FileNotFoundError(f"Question file {path} does not exist.")
        table = datasets.load_dataset(_LOCAL_FORMATS[path.suffix], data_files=str(path), split="train")
    else:
        try:
            table = datasets.load_dataset(source, config, split=split)
        except (FileNotFoundError, ConnectionError, ValueError) as error:
            raise FileNotFoundError(
                f"Dataset {source!r} ({config}, {split}) is neither a local file nor in the Hugging Face "
                f"cache. Download it where a network is available or give a local .jsonl/.parquet path. ({error})"
            ) from error
    return table


def load_triviaqa(source: str = "mandarjoshi/trivia_qa", split: str = "validation") -> pd.DataFrame:
    """TriviaQA (rc.nocontext): free-text answers with ``answer.aliases`` as accepted answers."""
    table = _read(source, "rc.nocontext", split)
    rows = [
        {
            "id": f"triviaqa-{record['question_id']}",
            "domain": "triviaqa",
            "question": record["question"],
            "choices": [],
            "answer": record["answer"]["value"],
            "aliases": sorted(set(record["answer"]["aliases"]) | set(record["answer"]["normalized_aliases"])),
        }
        for record in table
    ]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


_GSM8K_FINAL = re.compile(r"####\s*([-\d,\.]+)")


def load_gsm8k(source: str = "openai/gsm8k", split: str = "test") -> pd.DataFrame:
    """GSM8K (main): the gold answer is the number after ``####`` in the worked solution."""
    table = _read(source, "main", split)
    rows = []
    for index, record in enumerate(table):
        final = _GSM8K_FINAL.search(record["answer"])
        if final is None:
            raise ValueError(f"GSM8K record {index} has no '#### <number>' final answer: {record['answer'][-80:]!r}")
        rows.append(
            {
                "id": f"gsm8k-{index:05d}",
                "domain": "gsm8k",
                "question": record["question"],
                "choices": [],
                "answer": final.group(1).replace(",", ""),
                "aliases": [],
            }
        )
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def load_mmlu_pro(source: str = "TIGER-Lab/MMLU-Pro", split: str = "test") -> pd.DataFrame:
    """MMLU-Pro: up to ten options (A-J) and the correct letter."""
    table = _read(source, None, split)
    rows = [
        {
            "id": f"mmlu_pro-{record['question_id']}",
            "domain": "mmlu_pro",
            "question": record["question"],
            "choices": list(record["options"]),
            "answer": record["answer"],
            "aliases": [],
        }
        for record in table
    ]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)
