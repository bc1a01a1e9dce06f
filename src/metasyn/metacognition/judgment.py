"""The judgment variant: before answering, the model says whether it can answer the question correctly.

The scheme has three classes, from the model's accuracy over repeated trials of the question (the issue's
can / uncertain / cannot scheme):

- **can**: every trial correct (accuracy 1);
- **uncertain**: at least half of them correct (accuracy in [0.5, 1));
- **cannot**: fewer than half correct (accuracy below 0.5).

The truth for a question is the class of the base model's accuracy over its data_prep samples of that question:
``k`` correct of ``n`` samples (an unparseable sample is wrong, as the matchers score it). Training examples ask
for the class first and the answer after it (``judgment_messages``, ``judgment_completion``).

Evaluation on the test questions reads the class off each output (``parse_judgment``; unreadable is None) and
compares it with the truth: exact match over readable judgments, the readable share beside it (an unreadable
judgment is missing, not wrong, as in the pairwise task: see ``metasyn.metacognition.calibration``), the recall
of each true class, Cohen's kappa, and a confusion matrix per model (``confusion_matrix``, ``confusion_figure``).

Kappa is there because exact match rewards a model that names the commonest class every time: the judgment
fine-tune (conf/base's variant, trained on the demo's data, 2026-12-03) said "cannot" to all 153 test questions and matched 0.614 of them, the share of "cannot"
questions. Kappa counts agreement beyond what the two class shares give by chance: 0 for such a model, 1 for a
perfect one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from metasyn.lm.answers import EMPHASIS, line_settled
from metasyn.lm.prompts import ANSWER_FORMATS, Messages, question_block
from metasyn.metacognition.calibration import Estimate, estimate_with_intervals, too_few
from metasyn.questions import answer_type

ABILITY_CLASSES = ("can", "uncertain", "cannot")
UNREADABLE = "unreadable"

# Accuracies are k/n for n samples, so distinct accuracies near a boundary lie at least 1/n apart; a tolerance
# far below that absorbs float rounding (ten 0.1s sum to 0.9999999999999999) without merging any two of them.
_BOUNDARY_TOLERANCE = 1e-9
# A class word at the start of a value. "cannot", "can not" and "can't" come before "can", and "can" is not
# followed by an apostrophe, so that the refusal is never read as its first three letters. "can" at the end of
# a line is "can", whatever the next line starts with.
_CLASS_WORD = r"\W*(cannot|can[^\S\n]+not|can[’']?t|uncertain|can(?![’']))\b"
# "Judgment: can" (or the British "Judgement"), anywhere in the output.
_JUDGMENT_LINE = re.compile(r"\bjudge?ment\s*[:=]\s*" + _CLASS_WORD, re.IGNORECASE)
# Without a label, a first line that starts with a class followed by punctuation or nothing ("Cannot.", "can").
# A class followed by more words is not one: "Can you ..." asks, "cannot answer ..." is not in the format.
_BARE_CLASS = re.compile(r"^" + _CLASS_WORD + r"(?=\s*(?:[^\w\s]|$))", re.IGNORECASE)
# The matched word without spaces or apostrophes, and the class it states.
_CLASS_OF_WORD = {"can": "can", "uncertain": "uncertain", "cannot": "cannot", "cant": "cannot"}


def ability_class(accuracy: float) -> str:
    """The class of an accuracy in [0, 1]: 1 is "can", [0.5, 1) "uncertain", below 0.5 "cannot"."""
    if not 0.0 <= accuracy <= 1.0:  # False for NaN too
        raise ValueError(f"An accuracy must lie in [0, 1]; got {accuracy}.")
    if math.isclose(accuracy, 1.0, abs_tol=_BOUNDARY_TOLERANCE):
        return "can"
    return "uncertain" if accuracy >= 0.5 - _BOUNDARY_TOLERANCE else "cannot"


def ability_classes(correct_counts: Sequence[int], n_samples: int | Sequence[int]) -> np.ndarray:
    """The class of each question from its correct samples ``k`` of ``n``: k == n can, 2k >= n uncertain."""
    # On integers, so no boundary depends on how an accuracy was rounded.
    correct = np.asarray(correct_counts)
    total = np.broadcast_to(np.asarray(n_samples), correct.shape)
    if not (np.issubdtype(correct.dtype, np.integer) and np.issubdtype(total.dtype, np.integer)):
        raise ValueError(
            f"Counts must be integers; got {correct.dtype} correct counts and {total.dtype} sample counts."
        )
    if np.any(total < 1) or np.any(correct < 0) or np.any(correct > total):
        raise ValueError("Each question needs at least one sample and between 0 and n_samples correct ones.")
    return np.select([correct == total, 2 * correct >= total], ["can", "uncertain"], default="cannot").astype(object)


def judgment_messages(question: Mapping) -> Messages:
    """Judgment task: say whether the question can be answered correctly, then answer it."""
    instruction = ANSWER_FORMATS[answer_type(question["domain"])]
    content = (
        f"{question_block(question)}\n\nFirst say whether you can answer this question correctly: 'can', "
        f"'uncertain' or 'cannot'. Then answer it. {instruction} Reply in the form "
        "'Judgment: <can, uncertain or cannot>', then on a new line 'Answer: <answer>'."
    )
    return [{"role": "user", "content": content}]


def judgment_completion(ability: str, answer: str) -> str:
    """Target text of the judgment task."""
    if ability not in ABILITY_CLASSES:
        raise ValueError(f"Unknown ability class {ability!r}; use one of {ABILITY_CLASSES}.")
    return f"Judgment: {ability}\nAnswer: {answer}"


def parse_judgment(text: str) -> str | None:
    """The class after a ``Judgment:`` label, else a first line that is a class; None when unreadable."""
    text = EMPHASIS.sub("", text)
    lines = text.strip().splitlines()
    match = _JUDGMENT_LINE.search(text) or (_BARE_CLASS.match(lines[0]) if lines else None)
    if match is None:
        return None
    return _CLASS_OF_WORD[re.sub(r"[\s’']", "", match.group(1).lower())]


def judgment_settled(text: str) -> bool:
    """Whether ``text`` has a labelled judgment that no continuation can change: its ``Judgment:`` line has ended
    (``line_settled``; a label outranks an unlabelled first line, so a later one cannot override it)."""
    return line_settled(_JUDGMENT_LINE, text)


def _checked(predicted: Sequence[str | None], truth: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions and truths as arrays, and which predictions are readable (None or NaN is not)."""
    predicted, truth = np.asarray(predicted, dtype=object), np.asarray(truth, dtype=object)
    if predicted.ndim != 1 or predicted.shape != truth.shape:
        raise ValueError(
            f"predicted and truth must be 1-D and of equal length; got shapes {predicted.shape} and {truth.shape}."
        )
    # A table column stores a missing prediction as None or NaN.
    readable = ~pd.isna(predicted)
    unknown = (set(truth) | set(predicted[readable])) - set(ABILITY_CLASSES)
    if unknown:
        raise ValueError(f"Unknown ability classes {sorted(map(str, unknown))}; use one of {ABILITY_CLASSES}.")
    return predicted, truth, readable


def judgment_metrics(predicted: Sequence[str | None], truth: Sequence[str], min_n: int = 1) -> dict[str, Estimate]:
    """Exact match of readable judgments, their share, each true class's recall and Cohen's kappa (NaN below
    ``min_n``)."""
    predicted, truth, readable = _checked(predicted, truth)
    hit = readable & (predicted == truth)
    estimates = {
        "judgment_parse_rate": Estimate(float(readable.mean()) if len(readable) else np.nan, len(readable)),
    }
    groups = {"judgment_exact_match": (readable, "readable judgments")} | {
        f"judgment_recall_{ability}": (readable & (truth == ability), f"readable judgments of '{ability}' questions")
        for ability in ABILITY_CLASSES
    }
    for name, (rows, what) in groups.items():
        n = int(rows.sum())
        # max(.., 1): a share of no judgments is undefined even when min_n allows it.
        note = too_few(n, max(min_n, 1), what)
        estimates[name] = Estimate(np.nan if note else float(hit[rows].mean()), n, note)
    estimates["judgment_kappa"] = _kappa(predicted[readable], truth[readable], max(min_n, 1))
    return estimates


def _kappa(predicted: np.ndarray, truth: np.ndarray, min_n: int) -> Estimate:
    """Cohen's kappa of readable judgments; undefined below ``min_n`` or when both sides name one class only."""
    note = too_few(len(truth), min_n, "readable judgments")
    if not note and len(set(predicted) | set(truth)) == 1:
        note = f"undefined: every judgment and every truth is '{truth[0]}', so chance agreement is 1"
    if note:
        return Estimate(np.nan, len(truth), note)
    return Estimate(float(cohen_kappa_score(truth, predicted, labels=list(ABILITY_CLASSES))), len(truth))


def confusion_matrix(predicted: Sequence[str | None], truth: Sequence[str]) -> pd.DataFrame:
    """Counts by true class (rows) and predicted class (columns), with unreadable predictions in their own column."""
    predicted, truth, readable = _checked(predicted, truth)
    columns = [*ABILITY_CLASSES, UNREADABLE]
    counts = sklearn_confusion_matrix(truth, np.where(readable, predicted, UNREADABLE), labels=columns)
    # The truth is never unreadable: its row is all zeros.
    return pd.DataFrame(
        counts[: len(ABILITY_CLASSES)],
        index=pd.Index(ABILITY_CLASSES, name="truth"),
        columns=pd.Index(columns, name="predicted"),
    )


def confusion_figure(matrices: Mapping[str, pd.DataFrame]) -> Figure:
    """One confusion matrix per model: counts annotated, coloured by their share of the true class's questions."""
    figure = Figure(figsize=(4.6 * len(matrices), 4), layout="constrained")
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    for index, (ax, (model, matrix)) in enumerate(zip(axes, matrices.items())):
        # Row shares, so a rare true class is as legible as a common one; an empty row stays blank.
        shares = matrix.div(matrix.sum(axis=1).replace(0, np.nan), axis=0)
        last = index == len(matrices) - 1
        sns.heatmap(
            shares,
            annot=matrix,
            fmt="d",
            vmin=0,
            vmax=1,
            cmap="Blues",
            cbar=last,
            cbar_kws={"label": "share of the true class's questions"} if last else None,
            ax=ax,
        )
        readable = int(matrix[list(ABILITY_CLASSES)].to_numpy().sum())
        diagonal = int(np.trace(matrix[list(ABILITY_CLASSES)].to_numpy()))
        match = f"exact match {diagonal / readable:.2f}" if readable else "no readable judgment"
        ax.set_title(f"{model}\n{match} · readable {readable}/{int(matrix.to_numpy().sum())}")
    return figure


def check_ability_columns(test_questions: pd.DataFrame) -> None:
    """Fail unless the test questions carry the sample counts that the true classes come from."""
    missing = sorted({"n_correct", "n_samples"} - set(test_questions.columns))
    if missing:
        raise ValueError(
            f"test_questions lack {missing}: rerun data_prep (select_test_questions), which counts each question's "
            "correct samples."
        )


def ability_truth(test_questions: pd.DataFrame, question_ids: Sequence[str]) -> np.ndarray:
    """Each question's true class: the base model's accuracy over its data_prep samples (``n_correct``, ``n_samples``)."""
    check_ability_columns(test_questions)
    questions = test_questions.set_index("id").loc[list(question_ids)]
    return ability_classes(questions["n_correct"].to_numpy(), questions["n_samples"].to_numpy())


def judgment_outputs(generations: pd.DataFrame, test_questions: pd.DataFrame) -> pd.DataFrame:
    """Per test question: the raw judgment output, the class read from it (None if unreadable) and the true class."""
    return generations.assign(
        predicted=[parse_judgment(text) for text in generations["raw_output"]],
        truth=ability_truth(test_questions, generations["question_id"]),
    )


def judgment_estimates(outputs: pd.DataFrame, min_n: int, bootstrap: Mapping) -> pd.DataFrame:
    """``judgment_metrics`` on the scored outputs, with percentile intervals over resampled questions."""
    predicted, truth = outputs["predicted"].to_numpy(dtype=object), outputs["truth"].to_numpy(dtype=object)
    return estimate_with_intervals(
        lambda rows: judgment_metrics(predicted[rows], truth[rows], min_n),
        len(outputs),
        n_resamples=bootstrap["n_resamples"],
        confidence_level=bootstrap["confidence_level"],
        seed=bootstrap["seed"],
    )
