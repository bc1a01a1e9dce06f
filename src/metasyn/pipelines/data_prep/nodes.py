"""data_prep nodes: questions -> sampled answers -> consistency -> confidence targets -> training examples.

Resume: ``answer_sample_batches`` is a ``PartitionedDataset`` with one parquet per batch of questions, saved lazily,
and ``answer_sample_batches_saved`` reads the same folder. ``sample_answers`` returns callables for the batches
without a saved partition only, so an interrupted run continues with the next unsaved batch
(``metasyn.metacognition.sampling`` says how batches of other settings are told apart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import datasets
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import train_test_split

from metasyn.lm.answers import check_matcher, get_matcher
from metasyn.lm.models import LanguageModel
from metasyn.lm.precision import computing_in
from metasyn.metacognition import examples as examples_lib
from metasyn.metacognition import plots as metacognition_plots
from metasyn.metacognition import sampling as sampling_lib
from metasyn.metacognition import targets as targets_lib
from metasyn.questions import validate_questions
from metasyn.questions.sources import load_source

logger = logging.getLogger(__name__)


def check_sampling(sampling: dict) -> dict:
    """Reject sampling settings that cannot yield a consistency signal, before any model is loaded."""
    if sampling["n_samples"] < 2:
        raise ValueError(
            f"data_prep.sampling.n_samples is {sampling['n_samples']}; consistency needs at least 2 samples "
            "per question (the study uses 10)."
        )
    check_matcher(sampling["matcher"])
    return sampling


def assemble_questions(sources: dict, seed: int) -> pd.DataFrame:
    """Collect every enabled question source (options not null) into one validated table."""
    # null disables a source: environments are overlays, so conf/slurm cannot remove conf/base's sets.
    enabled = {name: options for name, options in (sources or {}).items() if options is not None}
    if not enabled:
        raise ValueError("data_prep.sources enables no source: give at least one source its options (not null).")
    frames = [load_source(name, options, seed) for name, options in enabled.items()]
    return validate_questions(pd.concat(frames, ignore_index=True))


def split_questions(questions: pd.DataFrame, split: dict, seed: int) -> pd.DataFrame:
    """Assign train/validation/test per question, stratified by domain and seeded."""
    rest, test = train_test_split(
        questions, test_size=split["test_fraction"], stratify=questions["domain"], random_state=seed
    )
    validation_share = split["validation_fraction"] / (1 - split["test_fraction"])
    train, validation = train_test_split(rest, test_size=validation_share, stratify=rest["domain"], random_state=seed)
    labels = pd.concat(
        [pd.Series("train", train.index), pd.Series("validation", validation.index), pd.Series("test", test.index)]
    )
    return questions.assign(split=labels.reindex(questions.index))


def sample_answers(
    questions: pd.DataFrame,
    model: LanguageModel,
    sampling: dict,
    seed: int,
    saved_batches: dict[str, pd.DataFrame],
) -> dict[str, Callable[[], pd.DataFrame]]:
    """Per batch of questions not saved yet, a callable sampling each question ``n_samples`` times (saved lazily)."""
    # Planned with the model that samples, so that each batch's fingerprint names the dtype it is sampled in.
    sampler = computing_in(model, sampling["dtype"])
    plan = sampling_lib.plan_batches(sampler, questions, sampling, seed)
    pending = sampling_lib.pending_batches(plan, saved_batches)
    logger.info("Answer samples: %d of %d batches to sample, the rest saved already.", len(pending), len(plan))
    return sampling_lib.lazy_samples(sampler, pending, sampling)


def generate_reference_answers(questions: pd.DataFrame, model: LanguageModel, sampling: dict) -> pd.DataFrame:
    """Each question's greedy output in the trained prompt: the answer consistency is measured against."""
    return sampling_lib.greedy_answers(
        computing_in(model, sampling["dtype"]), questions, sampling["max_new_tokens"], sampling["greedy_batch_size"]
    )


def score_answer_samples(
    sample_batches: dict[str, Callable[[], pd.DataFrame]],
    reference_outputs: pd.DataFrame,
    questions: pd.DataFrame,
    sampling: dict,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every saved sample in question order and each greedy reference answer, its answer read and scored."""
    matcher = get_matcher(sampling["matcher"])
    samples = sampling_lib.score_samples(sample_batches, questions, sampling["n_samples"], matcher)
    return samples, sampling_lib.score_greedy_answers(reference_outputs, questions, matcher)


def score_consistency(samples: pd.DataFrame, reference_answers: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Per question: the greedy answer, its correctness and the samples' consistency with it; domain and split."""
    table = targets_lib.question_consistency(samples, reference_answers)
    return table.merge(questions[["id", "domain", "split"]], left_on="question_id", right_on="id").drop(columns="id")


def fit_consistency_bins(consistency: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """Empirical accuracy per consistency bin, on training questions only (no leakage from test)."""
    return targets_lib.bin_accuracy(consistency[consistency["split"] == "train"], targets["n_bins"])


def assign_targets(consistency: pd.DataFrame, bins: pd.DataFrame, targets: dict, seed: int) -> pd.DataFrame:
    """Target confidences for answerable train/validation questions, with over-full bins subsampled."""
    trainable = consistency[
        consistency["split"].isin(["train", "validation"]) & consistency["reference_answer"].notna()
    ]
    with_targets = targets_lib.defined_targets(targets_lib.target_confidences(trainable, bins, targets["noise"], seed))
    return pd.concat(
        targets_lib.balance_bins(group, targets["balance_max_ratio"], seed)
        for _, group in with_targets.groupby("split", sort=True)
    ).reset_index(drop=True)


def build_training_examples(
    targets: pd.DataFrame, questions: pd.DataFrame, examples: dict, seed: int
) -> datasets.DatasetDict:
    """Single-question and pairwise examples per split, as a Hugging Face DatasetDict (train, validation)."""
    splits = {}
    for split in ("train", "validation"):
        split_targets = targets[targets["split"] == split]
        singles = examples_lib.single_task_examples(split_targets, questions)
        n_pairs = int(round(examples["pairwise_per_single"] * len(singles)))
        pairs = examples_lib.pairwise_task_examples(split_targets, questions, n_pairs, seed)
        if not singles:
            raise ValueError(f"No {split} examples: every {split} question lacks a parseable greedy answer.")
        splits[split] = datasets.Dataset.from_list(singles + pairs).shuffle(seed=seed)
    return datasets.DatasetDict(splits)


def drop_long_examples(
    examples: datasets.DatasetDict, model: LanguageModel, max_length: int | None
) -> tuple[datasets.DatasetDict, pd.DataFrame]:
    """Drop examples longer than finetune's ``max_length`` in the base model's tokens; tabulate every length."""
    return examples_lib.drop_long_examples(model.tokenizer, examples, max_length)


def select_test_questions(questions: pd.DataFrame, consistency: pd.DataFrame) -> pd.DataFrame:
    """Held-out questions with the base model's consistency (calibration's consistency ranking) and how many of
    its samples were correct (the judgment classes' truth)."""
    test = questions[questions["split"] == "test"].drop(columns="split")
    columns = ["question_id", "consistency", "reference_answer", "reference_correct", "n_correct", "n_samples"]
    return test.merge(consistency[columns], left_on="id", right_on="question_id").drop(columns="question_id")


def plot_consistency(consistency: pd.DataFrame, bins: pd.DataFrame) -> Figure:
    """Consistency histogram per domain, and empirical accuracy per bin (the targets' source)."""
    return metacognition_plots.consistency_figure(consistency, bins)


def plot_example_lengths(example_lengths: pd.DataFrame, max_length: int | None) -> Figure:
    """Token-length histogram of the training examples per split, with the ``max_length`` cut."""
    return metacognition_plots.example_lengths_figure(example_lengths, max_length)
