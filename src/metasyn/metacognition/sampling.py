"""Sampling answers for consistency, a batch of questions at a time, so that an interrupted run resumes.

Each batch is saved as one partition named ``<batch index>-<fingerprint>`` (``metasyn.lm.resume``): the zero-padded
index makes partitions sort, and so get sampled and saved, in question order; the fingerprint hashes everything
the batch's samples depend on (the model, ``n_samples``, ``temperature``, ``max_new_tokens``, the batch's question
ids and rendered prompts, which the batch size and prompt template decide, its seed and the sampler). A batch's
seed comes from the run's seed and its question ids, not from its place in a run, so a resumed run samples what an
uninterrupted one would have.

A saved partition that this run does not expect was sampled differently. It is refused rather than replaced:
it may hold hours of GPU time, and a consistency mixed from two samplings would look like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from metasyn.lm.answers import Matcher, answer_wording, domain_answer_type, score_answers
from metasyn.lm.generation import InverseCdfSampler, generate
from metasyn.lm.models import LanguageModel, describe_model
from metasyn.lm.prompts import confidence_messages, render_prompts
from metasyn.lm.resume import batched, fingerprint, lazy_batches

# The sampling settings that change a sample; ``matcher`` only scores samples, after they are saved.
SAMPLE_SETTINGS = ("n_samples", "temperature", "max_new_tokens")
BATCH_COLUMNS = ["question_id", "sample_index", "output"]


@dataclass(frozen=True)
class SampleBatch:
    """One batch of questions to sample: its partition id, questions (records), rendered prompts and seed."""

    partition: str
    questions: list[dict]
    prompts: list[str]
    seed: int


def batch_seed(seed: int, question_ids: Sequence[str]) -> int:
    """A batch's sampling seed, from the run's seed and the batch's question ids alone."""
    return int(fingerprint([seed, list(question_ids)])[:8], 16)


def plan_batches(lm: LanguageModel, questions: pd.DataFrame, sampling: Mapping, seed: int) -> list[SampleBatch]:
    """Consecutive batches of ``sampling["batch_size"]`` questions in table order, in the trained prompt."""
    records = questions.to_dict("records")
    # The trained and evaluated prompt: the answer is read off the output, the stated confidence ignored.
    prompts = render_prompts(lm.tokenizer, [confidence_messages(question) for question in records])
    # Where the model runs does not make it another model.
    model = {key: value for key, value in describe_model(lm).items() if key != "device"}
    settings = {key: sampling[key] for key in SAMPLE_SETTINGS}
    size = sampling["batch_size"]
    plan = []
    for index, (batch, batch_prompts) in enumerate(zip(batched(records, size), batched(prompts, size), strict=True)):
        ids = [question["id"] for question in batch]
        seed_of_batch = batch_seed(seed, ids)
        digest = fingerprint({
            "model": model, "settings": settings, "question_ids": ids, "prompts": batch_prompts, "seed": seed_of_batch,
            # Samples drawn by another sampler (generate's own multinomial, before) are other samples for one seed.
            "sampler": InverseCdfSampler.__name__,
        })  # fmt: skip
        plan.append(SampleBatch(f"{index:06d}-{digest[:16]}", batch, batch_prompts, seed_of_batch))
    return plan


def pending_batches(plan: Sequence[SampleBatch], saved: Collection[str]) -> list[SampleBatch]:
    """The planned batches without a saved partition; a saved partition the plan does not name is refused."""
    stale = sorted(set(saved) - {batch.partition for batch in plan})
    if stale:
        raise ValueError(
            f"{len(stale)} saved answer sample batches (e.g. {stale[:3]}) were sampled with other settings than this "
            "run's (model, n_samples, temperature, max_new_tokens, prompt, batch_size, seed or questions), and "
            "mixing two samplings would corrupt consistency. Delete the folder of the catalog's "
            "answer_sample_batches (data/02_intermediate/answer_sample_batches by default) to sample afresh, or "
            "restore the settings they were sampled with."
        )
    return [batch for batch in plan if batch.partition not in saved]


def sample_batch(lm: LanguageModel, batch: SampleBatch, sampling: Mapping) -> pd.DataFrame:
    """``n_samples`` answers to each question of ``batch`` in one generation batch (``BATCH_COLUMNS``)."""
    n_samples = sampling["n_samples"]
    generations = generate(
        lm,
        batch.prompts,
        sampling["max_new_tokens"],
        do_sample=True,
        temperature=sampling["temperature"],
        num_return_sequences=n_samples,
        batch_size=len(batch.prompts),
        seed=batch.seed,
    )
    return pd.DataFrame({
        "question_id": [question["id"] for question in batch.questions for _ in range(n_samples)],
        "sample_index": list(range(n_samples)) * len(batch.questions),
        "output": generations.texts,
    })  # fmt: skip


def greedy_answers(lm: LanguageModel, questions: pd.DataFrame, max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    """Each question's greedy output in the trained prompt (``question_id, raw_output``): the answer it is graded on."""
    records = questions.to_dict("records")
    outputs = generate(
        lm,
        render_prompts(lm.tokenizer, [confidence_messages(question) for question in records]),
        max_new_tokens,
        batch_size=batch_size,
        progress="greedy answers",
    )
    return pd.DataFrame({"question_id": [question["id"] for question in records], "raw_output": outputs.texts})


def score_greedy_answers(greedy: pd.DataFrame, questions: pd.DataFrame, matcher: Matcher) -> pd.DataFrame:
    """Each greedy output's answer (None when unparseable), its wording and correctness: ``question_id, answer,
    answer_text, correct``.

    ``answer_text`` is the answer as the model wrote it (``answer_wording``), else the canonical answer: what a
    training completion states. The canonical form would teach a small model to drop the working it answers
    with: SmolLM2-135M writes "37 + 13 = 50", and trained to write "50" at once it lost nearly all its
    arithmetic (0.51 to 0.04 in a demo run, 2026-12-02).
    """
    answered = questions.set_index("id").loc[greedy["question_id"]].reset_index().to_dict("records")
    outputs = greedy["raw_output"].tolist()
    answers, correct = zip(*score_answers(outputs, answered, matcher), strict=True)
    wordings = [
        answer_wording(output, domain_answer_type(question["domain"]))
        for output, question in zip(outputs, answered, strict=True)
    ]
    return pd.DataFrame({
        "question_id": greedy["question_id"],
        "answer": list(answers),
        "answer_text": [wording or answer for wording, answer in zip(wordings, answers, strict=True)],
        "correct": list(correct),
    })  # fmt: skip


def lazy_samples(
    lm: LanguageModel, batches: Sequence[SampleBatch], sampling: Mapping
) -> dict[str, Callable[[], pd.DataFrame]]:
    """One callable per batch's partition, sampling the batch when its partition is saved."""
    return lazy_batches(
        [[batch.partition] for batch in batches],
        lambda index: {batches[index].partition: sample_batch(lm, batches[index], sampling)},
        "Answer samples",
    )


def score_samples(
    partitions: Mapping[str, Callable[[], pd.DataFrame]], questions: pd.DataFrame, n_samples: int, matcher: Matcher
) -> pd.DataFrame:
    """Every saved sample in question order with its extracted answer and correctness (unparseable ones kept)."""
    samples = pd.concat([partitions[partition]() for partition in sorted(partitions)], ignore_index=True)
    by_id = {question["id"]: question for question in questions.to_dict("records")}
    expected = [(question_id, index) for question_id in by_id for index in range(n_samples)]
    if list(zip(samples["question_id"], samples["sample_index"], strict=True)) != expected:
        saved = set(samples["question_id"])
        missing = [question_id for question_id in by_id if question_id not in saved]
        raise ValueError(
            f"The saved answer samples do not cover each question {n_samples} times in question order "
            f"({len(missing)} questions missing, e.g. {missing[:3]}): sampling did not run or was interrupted. Run "
            "the sample_answers node again (without --only-missing-outputs); it samples only the missing batches."
        )
    sampled_questions = [by_id[question_id] for question_id in samples["question_id"]]
    answers, correct = zip(*score_answers(samples["output"].tolist(), sampled_questions, matcher), strict=True)
    return pd.DataFrame({
        "question_id": samples["question_id"],
        "domain": [question["domain"] for question in sampled_questions],
        "sample_index": samples["sample_index"],
        "output": samples["output"],
        "answer": list(answers),
        "parsed": [answer is not None for answer in answers],
        "correct": list(correct),
    })  # fmt: skip
