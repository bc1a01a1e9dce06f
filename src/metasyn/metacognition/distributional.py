"""Distributional self-calibration: does the model know the distribution of its own answers?

For open prompts with many valid answers (``metasyn/resources/open_prompts.csv``: name an animal, pick a number
from 1 to 10, ...), the model answers each prompt ``n_samples`` times at temperature 1, which gives the
**empirical** distribution ``p`` of its normalised answers; asked once (greedily) for its five most likely answers
with the probability it would give each, it **reports** a distribution ``r``. The measure is, per prompt,
``KL(p || q)`` in nats, where ``q`` is ``r`` smoothed so that the divergence is finite; a model is summarised by the
mean KL over prompts with a percentile bootstrap interval over prompts.

Smoothing (``smoothed_reported``), with ``epsilon`` (default 0.05) and ``U`` the sampled answers that the report
lists with no positive probability:

1. The listed probabilities are kept as stated, but scaled down to sum to at most ``1 - epsilon`` when ``U`` is
   not empty (at most 1 when it is). A report that overcommits is read as relative; the reserve keeps KL finite.
2. The mass left over, ``L = 1 - listed sum`` (at least ``epsilon`` when ``U`` is not empty), is spread evenly over
   ``max(|U|, 1 / epsilon)`` answers: each answer of ``U`` gets ``L / max(|U|, 1 / epsilon)``, and whatever
   remains belongs to answers that were never sampled, which cost nothing in ``KL(p || q)``.

Why: the left-over mass is what the model gives to every answer it did not list, the sampled ones and all the
others alike, so handing all of it to the sampled ones would let the samples decide where the model's unstated
mass went. A model that reports nothing would then score a KL of 0 whenever it always gives the same answer. With
the rule, an empty report scores ``log(1 / epsilon) - H(p)`` (for at most ``1 / epsilon`` distinct answers), a
report equal to ``p`` scores 0, and missing a frequent answer costs about ``p(a) log(p(a) / (epsilon L))``. Listed
answers that were never sampled keep their mass: they add nothing to the divergence directly, but take mass from
the answers that were sampled.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib.resources import files

import numpy as np
import pandas as pd

from metasyn.lm.answers import normalize_text
from metasyn.lm.generation import generate
from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import Messages, render_prompts
from metasyn.metacognition.calibration import bootstrap_indices

ANSWER_INSTRUCTION = "Reply with your answer only: one word or number."
DEFAULT_EPSILON = 0.05
PER_PROMPT_COLUMNS = [
    "prompt_id",
    "kl",
    "n_samples",
    "n_empty",
    "n_distinct",
    "n_listed",
    "n_listed_sampled",
    "listed_mass",
]

# One reported answer per line: an optional list marker ("1.", "2)", "-"), the answer, a separator (":", "=", a
# dash, or an opening bracket) and a probability ("0.3", ".3", "0,3", "30%", "30 percent", "30"). The answer runs
# to the separator before the probability that ends the line, so "Guinea-Bissau: 0.1" keeps its hyphen.
_REPORTED_LINE = re.compile(
    r"^\s*(?:[-*•]\s*|\d+[.)]\s+)?(?P<answer>.+?)\s*(?:[:=\-–—]|\()\s*"
    r"(?P<number>\d+(?:[.,]\d+)?|[.,]\d+)\s*(?P<percent>%|percent\b)?\s*\)?\s*$",
    re.IGNORECASE,
)


def load_open_prompts() -> pd.DataFrame:
    """The open prompts shipped with the package (columns ``prompt_id``, ``prompt``)."""
    with files("metasyn.resources").joinpath("open_prompts.csv").open() as handle:
        return pd.read_csv(handle)


def answer_messages(prompt: str) -> Messages:
    """The sampling prompt: the open prompt, answered with one word or number only."""
    return [{"role": "user", "content": f"{prompt} {ANSWER_INSTRUCTION}"}]


def report_messages(prompt: str) -> Messages:
    """Asks for the five answers the model would give most often to the sampling prompt, with their probabilities."""
    # The report is about the sampling prompt itself, quoted word for word, so both describe the same question.
    content = (
        "If you were asked the following many times, how often would you give each answer?\n\n"
        f"{answer_messages(prompt)[0]['content']}\n\n"
        "List the five answers you would give most often, one per line in the form "
        "'<answer>: <probability>', where the probability (from 0 to 1) is how often you would give that answer."
    )
    return [{"role": "user", "content": content}]


def normalize_answer(text: str) -> str:
    """The first non-empty line, normalised as TriviaQA answers are (lower case, no punctuation or articles)."""
    lines = text.strip().splitlines()
    return normalize_text(lines[0]) if lines else ""


def empirical_distribution(answers: Iterable[str]) -> dict[str, float]:
    """Share of each normalised answer among the non-empty ones (an empty answer is left out)."""
    counts = Counter(answer for answer in map(normalize_answer, answers) if answer)
    total = sum(counts.values())
    return {answer: count / total for answer, count in counts.items()}


def _stated_probability(number: str, percent: bool) -> float | None:
    """A stated probability as a fraction; a whole number above 1 is a percentage; None outside [0, 1]."""
    value = float(number.replace(",", "."))
    # "Dog: 30" means 30%, as "Confidence: 85" does in metasyn.lm.answers; "1.5" is out of range, not 1.5%.
    if percent or ("." not in number and "," not in number and 1 < value <= 100):
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def parse_reported_distribution(text: str) -> dict[str, float]:
    """Reported probabilities by normalised answer (repeats summed); {} when no line reads as one."""
    reported: dict[str, float] = {}
    for line in text.replace("*", "").splitlines():
        match = _REPORTED_LINE.match(line)
        if not match:
            continue
        answer = normalize_answer(match["answer"])
        probability = _stated_probability(match["number"], bool(match["percent"]))
        if answer and probability is not None:
            reported[answer] = reported.get(answer, 0.0) + probability
    return reported


def smoothed_reported(
    reported: Mapping[str, float], support: Iterable[str], epsilon: float = DEFAULT_EPSILON
) -> dict[str, float]:
    """The reported distribution over the listed and ``support`` answers, smoothed as the module docstring says.

    ``support`` holds the sampled answers. The result may sum to less than 1: the rest belongs to answers that
    are neither listed nor sampled.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), e.g. {DEFAULT_EPSILON}; got {epsilon}.")
    listed = {answer: probability for answer, probability in reported.items() if probability > 0}
    unlisted = [answer for answer in dict.fromkeys(support) if answer not in listed]
    listed_sum = sum(listed.values())
    cap = 1 - epsilon if unlisted else 1.0
    scale = min(1.0, cap / listed_sum) if listed_sum > 0 else 0.0
    smoothed = {answer: probability * scale for answer, probability in listed.items()}
    left_over = 1 - listed_sum * scale
    share = left_over / max(len(unlisted), 1 / epsilon)
    return smoothed | {answer: share for answer in unlisted}


def kl_divergence(
    empirical: Mapping[str, float], reported: Mapping[str, float], epsilon: float = DEFAULT_EPSILON
) -> float:
    """``KL(empirical || smoothed reported)`` in nats; NaN when the empirical distribution is empty."""
    if not empirical:
        return float("nan")
    smoothed = smoothed_reported(reported, empirical, epsilon)
    return float(sum(p * math.log(p / smoothed[answer]) for answer, p in empirical.items() if p > 0))


def sample_open_answers(
    lm: LanguageModel,
    prompts: pd.DataFrame,
    n_samples: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> pd.DataFrame:
    """``n_samples`` sampled answers to each prompt (``prompt_id``, ``sample``, ``text``, normalised ``answer``).

    ``batch_size`` counts prompts, so one generation batch holds ``batch_size * n_samples`` sequences.
    """
    rendered = render_prompts(lm.tokenizer, [answer_messages(prompt) for prompt in prompts["prompt"]])
    generations = generate(
        lm,
        rendered,
        max_new_tokens,
        do_sample=True,
        temperature=temperature,
        num_return_sequences=n_samples,
        batch_size=batch_size,
        seed=seed,
    )
    return pd.DataFrame({
        "prompt_id": [prompt_id for prompt_id in prompts["prompt_id"] for _ in range(n_samples)],
        "sample": list(range(n_samples)) * len(prompts),
        "text": generations.texts,
        "answer": [normalize_answer(text) for text in generations.texts],
    })  # fmt: skip


def report_distributions(
    lm: LanguageModel, prompts: pd.DataFrame, max_new_tokens: int, batch_size: int
) -> pd.DataFrame:
    """The model's greedy report per prompt (``prompt_id``, ``text``, ``reported``: the parse as a JSON object)."""
    rendered = render_prompts(lm.tokenizer, [report_messages(prompt) for prompt in prompts["prompt"]])
    texts = generate(lm, rendered, max_new_tokens, batch_size=batch_size).texts
    return pd.DataFrame({
        "prompt_id": list(prompts["prompt_id"]),
        "text": texts,
        # A JSON string, not a dict column: parquet and CSV store it as it is, whatever answers were listed.
        "reported": [json.dumps(parse_reported_distribution(text)) for text in texts],
    })  # fmt: skip


def distributional_calibration(
    samples: pd.DataFrame,
    reports: pd.DataFrame,
    epsilon: float,
    n_resamples: int,
    confidence_level: float,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """Per-prompt KL and report statistics, and the mean KL over prompts with a bootstrap interval over prompts.

    Per prompt (``PER_PROMPT_COLUMNS``): the KL, the samples, the empty ones among them, the distinct non-empty
    answers, the answers the report lists, how many of those were sampled, and the listed mass as stated (before
    smoothing). A prompt whose samples are all empty has no empirical distribution: its KL is NaN and it is left
    out of the summary (``mean_kl``, ``ci_low``, ``ci_high``), whose ``n`` counts the prompts with a KL.
    """
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), e.g. 0.95; got {confidence_level}.")
    reported_by_prompt = {row.prompt_id: json.loads(row.reported) for row in reports.itertuples()}
    unreported = sorted(set(samples["prompt_id"]) - set(reported_by_prompt))
    if unreported:
        raise ValueError(f"No report for the sampled prompts {unreported}: sample and report the same prompts.")
    rows = []
    for prompt_id, answers in samples.groupby("prompt_id", sort=False)["answer"]:
        empirical = empirical_distribution(answers)
        reported = reported_by_prompt[prompt_id]
        rows.append({
            "prompt_id": prompt_id,
            "kl": kl_divergence(empirical, reported, epsilon),
            "n_samples": len(answers),
            "n_empty": sum(not normalize_answer(answer) for answer in answers),
            "n_distinct": len(empirical),
            "n_listed": len(reported),
            "n_listed_sampled": len(set(reported) & set(empirical)),
            "listed_mass": float(sum(reported.values())),
        })  # fmt: skip
    per_prompt = pd.DataFrame(rows, columns=PER_PROMPT_COLUMNS)
    kl = per_prompt["kl"].dropna().to_numpy()
    if not len(kl):
        return per_prompt, {"mean_kl": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    means = kl[bootstrap_indices(len(kl), n_resamples, seed)].mean(axis=1)
    tail = 50 * (1 - confidence_level)
    low, high = np.percentile(means, [tail, 100 - tail])
    return per_prompt, {"mean_kl": float(kl.mean()), "ci_low": float(low), "ci_high": float(high), "n": len(kl)}
