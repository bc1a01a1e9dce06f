"""The two training tasks as conversational examples: answer + confidence, and which of two questions is surer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from metasyn.lm.prompts import (
    assistant_message,
    confidence_completion,
    confidence_messages,
    pairwise_completion,
    pairwise_messages,
)


def single_task_examples(targets: pd.DataFrame, questions: pd.DataFrame) -> list[dict]:
    """One answer-plus-confidence example per question, the answer being the model's own modal answer."""
    by_id = questions.set_index("id")
    examples = []
    for row in targets.itertuples():
        question = {"id": row.question_id, **by_id.loc[row.question_id].to_dict()}
        examples.append(
            {
                "prompt": confidence_messages(question),
                "completion": assistant_message(confidence_completion(row.modal_answer, row.target_confidence)),
                "task": "single",
                "domain": question["domain"],
                "question_ids": [row.question_id],
                "answers": [row.modal_answer],
                "target_confidence": float(row.target_confidence),
                "preferred": -1,
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
                    pairwise_completion(preferred, first.modal_answer, second.modal_answer)
                ),
                "task": "pairwise",
                "domain": f"{questions_pair[0]['domain']}|{questions_pair[1]['domain']}",
                "question_ids": [first.question_id, second.question_id],
                "answers": [first.modal_answer, second.modal_answer],
                "target_confidence": float("nan"),
                "preferred": preferred,
            }
        )
    return examples
