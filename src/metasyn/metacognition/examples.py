"""The two training tasks as conversational examples: answer + confidence, and which of two questions is surer."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from metasyn.lm.prompts import (
    assistant_message,
    confidence_completion,
    confidence_messages,
    pairwise_completion,
    pairwise_messages,
)
from metasyn.metacognition.judgment import ability_classes, judgment_completion, judgment_messages

logger = logging.getLogger(__name__)


def target_completion(example: Mapping) -> str:
    """The completion text that an example's answers and targets call for, in the prompts module's wording."""
    if example["task"] == "single":
        return confidence_completion(example["answers"][0], example["target_confidence"])
    if example["task"] == "judgment":
        return judgment_completion(example["ability"], example["answers"][0])
    return pairwise_completion(example["preferred"], *example["answers"])


def single_task_examples(targets: pd.DataFrame, questions: pd.DataFrame) -> list[dict]:
    """One answer-plus-confidence example per question, the answer being the model's own greedy answer.

    Each also carries the question's ability class (the base model's accuracy over its samples) and the judgment
    task's prompt, which the ``judgment`` variant trains on instead (``metasyn.metacognition.controls``).
    """
    by_id = questions.set_index("id")
    examples = []
    for row in targets.itertuples():
        question = {"id": row.question_id, **by_id.loc[row.question_id].to_dict()}
        examples.append(
            {
                "prompt": confidence_messages(question),
                "completion": assistant_message(confidence_completion(row.reference_text, row.target_confidence)),
                "task": "single",
                "domain": question["domain"],
                "question_ids": [row.question_id],
                "answers": [row.reference_text],
                "target_confidence": float(row.target_confidence),
                "preferred": -1,
                "ability": str(ability_classes([row.n_correct], row.n_samples)[0]),
                "judgment_prompt": judgment_messages(question),
            }
        )
    return examples


def pairwise_task_examples(targets: pd.DataFrame, questions: pd.DataFrame, n_pairs: int, seed: int) -> list[dict]:
    """Pairs of questions from different bins; the target picks the one with the higher target confidence."""
    rng = np.random.default_rng(seed)
    by_id = questions.set_index("id")
    rows = targets.reset_index(drop=True)
    examples = []
    attempts = 0
    while len(examples) < n_pairs and attempts < 50 * n_pairs and rows["bin"].nunique() > 1:
        attempts += 1
        first, second = rows.iloc[rng.choice(len(rows), size=2, replace=False)].itertuples()
        if first.bin == second.bin:
            continue
        questions_pair = [{"id": row.question_id, **by_id.loc[row.question_id].to_dict()} for row in (first, second)]
        preferred = 1 if first.target_confidence >= second.target_confidence else 2
        examples.append(
            {
                "prompt": pairwise_messages(*questions_pair),
                "completion": assistant_message(
                    pairwise_completion(preferred, first.reference_text, second.reference_text)
                ),
                "task": "pairwise",
                "domain": f"{questions_pair[0]['domain']}|{questions_pair[1]['domain']}",
                "question_ids": [first.question_id, second.question_id],
                "answers": [first.reference_text, second.reference_text],
                "ability": "",
                "judgment_prompt": [],
                "target_confidence": float("nan"),
                "preferred": preferred,
            }
        )
    return examples


def example_token_lengths(tokenizer: PreTrainedTokenizerBase, examples: Dataset) -> list[int]:
    """Tokens in each example's prompt plus completion, rendered with the tokenizer's chat template."""
    return [
        len(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False))
        for prompt, completion in zip(examples["prompt"], examples["completion"], strict=True)
    ]


def drop_long_examples(
    tokenizer: PreTrainedTokenizerBase, examples: DatasetDict, max_length: int | None
) -> tuple[DatasetDict, pd.DataFrame]:
    """Drop the examples longer than ``max_length`` tokens from every split; None keeps them all.

    Training would truncate such an example and cut off its completion, the part the loss is on. Returns the
    kept examples and one row per example before the cut: ``split, task, length, kept``.
    """
    kept_splits, tables = {}, []
    for split, dataset in examples.items():
        lengths = example_token_lengths(tokenizer, dataset)
        kept = [max_length is None or length <= max_length for length in lengths]
        if lengths and not any(kept):
            raise ValueError(
                f"Every {split} example is longer than max_length={max_length} tokens (the shortest has "
                f"{min(lengths)}), so none could be trained on. Raise finetune.training.max_length to at least "
                f"{min(lengths)}, or give data_prep shorter questions (data_prep.sources)."
            )
        dropped = len(kept) - sum(kept)
        log = logger.warning if dropped else logger.info
        log(
            "%s: dropped %d of %d examples longer than max_length=%s tokens (finetune.training.max_length), "
            "kept %.1f%%; the longest has %d tokens",
            split,
            dropped,
            len(kept),
            max_length,
            100 * sum(kept) / max(len(kept), 1),
            max(lengths, default=0),
        )
        kept_splits[split] = dataset.select(np.flatnonzero(kept))
        tables.append(pd.DataFrame({"split": split, "task": dataset["task"], "length": lengths, "kept": kept}))
    return DatasetDict(kept_splits), pd.concat(tables, ignore_index=True)
