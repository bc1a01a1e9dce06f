"""How well stated confidence tracks correctness, with bootstrap intervals.

Single-question task (``N`` answers with stated confidence ``c_i`` in [0, 1] and correctness ``y_i``):

- **ECE** (equal width): ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` over ``n_bins`` bins (10: ``[0, 0.1),
  ..., [0.9, 1.0]``), the same bins as the training targets (``metasyn.metacognition.binning.equal_width_bin``).
- **ECE, equal mass**: the same sum over bins whose edges are confidence quantiles, so bins hold about the
  same number of answers; equal confidences always share a bin (so the value never depends on row order).
- **Debiased squared calibration error** (Kumar et al. 2019, "Verified uncertainty calibration"): over the
  equal-mass bins, ``sum_b |B_b| / N * [(acc(B_b) - conf(B_b))^2 - acc(B_b) (1 - acc(B_b)) / (|B_b| - 1)]``:
  each bin's squared gap less its sampling variance (a bin of one answer adds 0). Its expectation is the
  binned squared calibration error itself, so it can be negative by chance, and the difference between two
  models is unbiased. ECE's is not: its plug-in value is biased upwards by an amount that depends on how many
  distinct confidences a model states (a calibrated model scores about 0.09 at N = 153), so two calibrated
  models that differ in resolution differ in ECE. With 153 answers and 10 bins, the percentile interval of
  that ECE difference excluded 0 in 38-53% of simulated datasets, this one's in 1-4%
  (``test_debiased_squared_error_finds_no_change_between_two_calibrated_models``). The verdict uses it.
- **Brier score**: ``mean((c_i - y_i)^2)``.
- **AUROC**: probability that a random correct answer was stated with more confidence than a random
  incorrect one (ties count one half). Undefined (NaN, with the reason) when every answer is correct or
  every answer is wrong.
- **Risk-coverage**: keep the answers with confidence >= t; coverage is the share kept, risk the error rate
  among them; one point per distinct confidence. **AURC** = ``sum_k (coverage_k - coverage_{k-1}) * risk_k``
  (lower is better; with distinct confidences, the mean risk over the N coverage levels ``1/N, ..., 1``).

Pairwise task (the model says which of two questions it is more likely to answer correctly):

- **AUC_a**: over pairs with a readable choice where exactly one of the two questions is answered correctly,
  how often the model picks that one; **AUC_c**: over pairs with a readable choice whose consistency differs,
  how often it picks the more consistent one. For a two-alternative choice this share is the AUC of the
  choice as a score. An unreadable choice is *missing*, not a tie: scoring it one half would let format
  compliance pass for discrimination (a model that never answers the format would score 0.5, chance, and
  learning the format alone would move it). ``pairwise_parse_rate`` reports the readable share beside them.

Every calibration metric needs at least ``min_n`` items with a confidence (or readable pairs); below that it
is undefined (NaN) with the reason, not estimated.

Bootstrap intervals are percentile intervals over items resampled with replacement from a seeded generator,
so the same seed and item count give the same resamples for every model: differences between models
computed on the same resamples are paired. The item is a **question** for both tasks: a question appears in
several pairs, so pairs are not independent; ``pairs_over_questions`` turns a pair estimator into one over
resampled questions (a pair drawn as often as the product of its two questions' draws). ECE is biased
upwards on small samples, so its interval can sit slightly above the point estimate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from metasyn.metacognition.binning import equal_width_bin

ALL_DOMAINS = "all"
BIN_STRATEGIES = ("equal_width", "equal_mass")
METRIC_COLUMNS = ["metric", "value", "ci_low", "ci_high", "n", "note"]


class Estimate(NamedTuple):
    """A metric's value, the number of items it rests on, and why it is undefined when it is NaN."""

    value: float
    n: int
    note: str = ""


# Maps item positions (questions or pairs, repeats allowed for bootstrap resamples) to named estimates.
Estimator = Callable[[np.ndarray], dict[str, Estimate]]


class RiskCoverage(NamedTuple):
    """Points of the risk-coverage curve, from the most confident answers to all of them."""

    threshold: np.ndarray
    coverage: np.ndarray
    risk: np.ndarray


# ----------------------------------------------------------------------------------------- single task


def _checked(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=float)
    labels = np.asarray(correct)
    if confidence.ndim != 1 or confidence.shape != labels.shape:
        raise ValueError(
            f"confidence and correct must be 1-D and of equal length; got shapes {confidence.shape} and {labels.shape}."
        )
    if len(confidence) == 0:
        raise ValueError("Calibration metrics need at least one answer with a stated confidence; got none.")
    if not np.all((confidence >= 0) & (confidence <= 1)):
        raise ValueError(
            f"confidence must lie in [0, 1] (no NaN); got values from {np.nanmin(confidence)} to "
            f"{np.nanmax(confidence)}. Drop unparsed outputs first (metasyn.lm.answers.parse_confidence gives None)."
        )
    if labels.dtype != bool and not np.isin(labels, [0, 1]).all():
        raise ValueError("correct must hold booleans or 0/1 values.")
    return confidence, labels.astype(bool)


def bin_index(confidence: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """The calibration bin (0 to ``n_bins - 1``) of each confidence."""
    if strategy == "equal_width":
        return equal_width_bin(confidence, n_bins)
    if strategy == "equal_mass":
        edges = np.quantile(confidence, np.linspace(0, 1, n_bins + 1))
        # side="right": like the equal-width bins, a confidence on an edge opens the upper bin.
        return np.searchsorted(edges[1:-1], confidence, side="right")
    raise ValueError(f"Unknown binning strategy {strategy!r}; use one of {BIN_STRATEGIES}.")


def calibration_bins(
    confidence: Sequence[float],
    correct: Sequence[bool],
    n_bins: int = 10,
    strategy: str = "equal_width",
) -> pd.DataFrame:
    """Per bin: answer count, mean stated confidence and accuracy (NaN for empty bins): the reliability diagram."""
    confidence, correct = _checked(confidence, correct)
    bins = bin_index(confidence, n_bins, strategy)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct.astype(float), minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "count": count,
            "mean_confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def expected_calibration_error(
    confidence: Sequence[float],
    correct: Sequence[bool],
    n_bins: int = 10,
    strategy: str = "equal_width",
) -> float:
    """ECE: the answer-weighted mean gap between accuracy and stated confidence over bins."""
    # Written by hand: scikit-learn has calibration_curve but no ECE, and its curve drops the bin counts.
    confidence, correct = _checked(confidence, correct)
    bins = bin_index(confidence, n_bins, strategy)
    # |B|/N * |acc(B) - conf(B)| = |sum of correct in B - sum of confidence in B| / N
    gaps = np.bincount(bins, weights=correct.astype(float), minlength=n_bins) - np.bincount(
        bins, weights=confidence, minlength=n_bins
    )
    return float(np.abs(gaps).sum() / len(confidence))


def debiased_squared_calibration_error(
    confidence: Sequence[float],
    correct: Sequence[bool],
    n_bins: int = 10,
) -> float:
    """Kumar et al. (2019)'s debiased squared calibration error over equal-mass bins (module docstring)."""
    # Written by hand: the authors' package (uncertainty-calibration 0.1.4, 2020) bins Python lists per call,
    # too slow for a bootstrap of every model, method and domain; the formula is its unbiased_square_ce.
    confidence, correct = _checked(confidence, correct)
    bins = bin_index(confidence, n_bins, "equal_mass")
    count = np.bincount(bins, minlength=n_bins)
    filled = count >= 2
    accuracy = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)[filled] / count[filled]
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins)[filled] / count[filled]
    excess = (accuracy - mean_confidence) ** 2 - accuracy * (1 - accuracy) / (count[filled] - 1)
    return float((count[filled] * excess).sum() / len(confidence))


def brier_score(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean squared difference between stated confidence and correctness (0/1)."""
    confidence, correct = _checked(confidence, correct)
    return float(np.mean((confidence - correct) ** 2))


def auroc_undefined_reason(correct: Sequence[bool]) -> str:
    """Why AUROC cannot be computed for these answers ("" when it can)."""
    correct = np.asarray(correct, dtype=bool)
    if correct.all():
        return f"all {len(correct)} answers correct: AUROC needs correct and incorrect answers"
    if not correct.any():
        return f"all {len(correct)} answers wrong: AUROC needs correct and incorrect answers"
    return ""


def auroc(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Area under the ROC curve of confidence for correct vs incorrect answers; NaN when one class is missing."""
    confidence, correct = _checked(confidence, correct)
    if auroc_undefined_reason(correct):
        return float("nan")
    # The Mann-Whitney rank sum (tie-averaged ranks count ties one half), not sklearn's roc_auc_score: the same
    # value (tests/test_metrics.py compares them), but its input validation costs 3 ms a call and the
    # bootstrap makes about 12,000 calls per model, 60 times this one's cost.
    n_correct = int(correct.sum())
    rank_sum = rankdata(confidence)[correct].sum()
    return float((rank_sum - n_correct * (n_correct + 1) / 2) / (n_correct * (len(correct) - n_correct)))


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> RiskCoverage:
    """Error rate among the answers kept at each confidence threshold, most confident first."""
    # Written by hand: no well-kept library provides selective-prediction curves.
    confidence, correct = _checked(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    errors = np.cumsum(~correct[order])
    # Equal confidences are kept or dropped together: evaluate at the end of each run of ties.
    ends = np.append(np.flatnonzero(np.diff(ranked)), len(ranked) - 1)
    kept = ends + 1
    return RiskCoverage(threshold=ranked[ends], coverage=kept / len(ranked), risk=errors[ends] / kept)


def area_under_risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """AURC: risk integrated over coverage as a step function (lower is better)."""
    curve = risk_coverage(confidence, correct)
    return float(np.sum(np.diff(curve.coverage, prepend=0.0) * curve.risk))


def too_few(n: int, min_n: int, what: str) -> str:
    """The note of a metric left undefined because it rests on fewer than ``min_n`` items ('' when enough)."""
    return f"only {n} {what} (minimum {min_n}, calibration.metrics.min_n)" if n < min_n else ""


def confidence_task_metrics(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_bins: int = 10,
    min_n: int = 1,
    scored: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """Single-question metrics. ``confidence`` is NaN where the model gave none (unparseable output).

    Accuracy and parse rate count every output (an unparseable answer is wrong); the calibration metrics use
    the outputs with a confidence only, or the subset ``scored`` of them (e.g. the questions another model
    also gave a confidence for), ``n`` says how many that is, and below ``min_n`` they are undefined.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=float)
    has_confidence = ~np.isnan(confidence)
    parsed = has_confidence if scored is None else has_confidence & np.asarray(scored, dtype=bool)
    n_outputs, n_parsed = len(correct), int(parsed.sum())
    metrics = {
        "accuracy": Estimate(float(correct.mean()), n_outputs),
        "parse_rate": Estimate(float(has_confidence.mean()), n_outputs),
    }
    calibration: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "ece": lambda c, y: expected_calibration_error(c, y, n_bins, "equal_width"),
        "ece_equal_mass": lambda c, y: expected_calibration_error(c, y, n_bins, "equal_mass"),
        "squared_ce_debiased": lambda c, y: debiased_squared_calibration_error(c, y, n_bins),
        "brier": brier_score,
        "auroc": auroc,
        "aurc": area_under_risk_coverage,
    }
    if n_parsed == 0 or n_parsed < min_n:
        note = (
            f"no parseable answer with confidence among {n_outputs} outputs"
            if n_parsed == 0
            else too_few(n_parsed, min_n, "answers with a confidence")
        )
        return metrics | {name: Estimate(float("nan"), n_parsed, note) for name in calibration}
    stated, scored = confidence[parsed], correct[parsed]
    for name, metric in calibration.items():
        metrics[name] = Estimate(metric(stated, scored), n_parsed)
    metrics["auroc"] = metrics["auroc"]._replace(note=auroc_undefined_reason(scored))
    return metrics


# --------------------------------------------------------------------------------------- pairwise task


def better_of_pair(first: Sequence[float], second: Sequence[float]) -> np.ndarray:
    """Per pair, which side scores higher: 1 or 2, and 0 for a tie (works for correctness and consistency)."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    return np.select([first > second, second > first], [1, 2], default=0)


def pairwise_agreement(choice: Sequence[int], better: Sequence[int]) -> float:
    """Share of pairs with a readable choice (1 or 2) and a better side where ``choice`` picks it.

    ``choice`` 0 is an unreadable choice and ``better`` 0 a tie; both pairs are left out (NaN if none is left).
    """
    choice, better = np.asarray(choice), np.asarray(better)
    if not np.isin(choice, [0, 1, 2]).all() or not np.isin(better, [0, 1, 2]).all():
        raise ValueError("Pairwise choices and references must be 1, 2, or 0 (no choice / tie).")
    eligible = (better != 0) & (choice != 0)
    if not eligible.any():
        return float("nan")
    return float(np.mean(choice[eligible] == better[eligible]))


def pairwise_task_metrics(
    choice: np.ndarray,
    better_by_accuracy: np.ndarray,
    better_by_consistency: np.ndarray,
    min_n: int = 1,
    scored: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """AUC_a, AUC_c over readable choices (or the subset ``scored`` of them, e.g. the pairs another model also
    read), and the share of pairwise outputs with one; ``choice`` 0 = unreadable."""
    choice = np.asarray(choice)
    metrics = {"pairwise_parse_rate": Estimate(float(np.mean(choice != 0)) if len(choice) else np.nan, len(choice))}
    compared = choice if scored is None else np.where(np.asarray(scored, dtype=bool), choice, 0)
    for name, better, reason in (
        ("auc_a", np.asarray(better_by_accuracy), "readable pairs with exactly one question answered correctly"),
        ("auc_c", np.asarray(better_by_consistency), "readable pairs that differ in consistency"),
    ):
        n = int(np.count_nonzero((compared != 0) & (better != 0)))
        note = too_few(n, max(min_n, 1), reason)
        metrics[name] = Estimate(np.nan if note else pairwise_agreement(compared, better), n, note)
    return metrics


def pairs_over_questions(
    estimate_pairs: Estimator, first: Sequence[int], second: Sequence[int], n_questions: int
) -> Estimator:
    """An estimator over question positions from one over pair rows: each pair counted draws(q1) x draws(q2).

    ``first``/``second`` are each pair's question positions (``0 .. n_questions - 1``). On every question
    once, every pair counts once; on a bootstrap resample of questions, a pair is drawn as often as both of
    its questions together, and pairs with an undrawn question drop out.
    """
    first, second = np.asarray(first, dtype=int), np.asarray(second, dtype=int)

    def over_questions(questions: np.ndarray) -> dict[str, Estimate]:
        draws = np.bincount(questions, minlength=n_questions)
        return estimate_pairs(np.repeat(np.arange(len(first)), draws[first] * draws[second]))

    return over_questions


# A difference metric's name: the metric's, then this (``ece_minus_base``).
DIFFERENCE_SUFFIX = "_minus_base"


def paired_difference(treated: Estimator, reference: Estimator, suffix: str = DIFFERENCE_SUFFIX) -> Estimator:
    """An estimator of ``treated - reference`` per metric, both evaluated on the same items."""

    def difference(items: np.ndarray) -> dict[str, Estimate]:
        ours, theirs = treated(items), reference(items)
        return {
            name + suffix: Estimate(
                ours[name].value - theirs[name].value,
                min(ours[name].n, theirs[name].n),
                "; ".join(note for note in (ours[name].note, theirs[name].note) if note),
            )
            for name in ours
        }

    return difference


# ------------------------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_items)`` item positions drawn with replacement; the same for the same arguments."""
    return np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))


def estimate_with_intervals(
    estimate: Estimator,
    n_items: int,
    *,
    n_resamples: int,
    confidence_level: float,
    seed: int,
) -> pd.DataFrame:
    """Point estimates on all items, with percentile bootstrap intervals over resampled items.

    ``estimate`` maps item positions (``0 .. n_items - 1``, repeats allowed) to metrics. Resamples on which
    a metric is undefined (e.g. AUROC when a resample holds one class only) are left out of its interval.
    """
    # Written by hand rather than with scipy.stats.bootstrap: its interval is NaN as soon as a single
    # resample is undefined, and it cannot share one set of resamples across models and metrics.
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), e.g. 0.95; got {confidence_level}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1 (1000 or more for a 95% interval); got {n_resamples}.")
    point = estimate(np.arange(n_items))
    resampled = pd.DataFrame(
        [
            {name: result.value for name, result in estimate(items).items()}
            for items in bootstrap_indices(n_items, n_resamples, seed)
        ],
        columns=list(point),
    )
    tail = 50 * (1 - confidence_level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: an undefined metric stays NaN
        low, high = np.nanpercentile(resampled.to_numpy(dtype=float), [tail, 100 - tail], axis=0)
    table = pd.DataFrame(
        {
            "metric": list(point),
            "value": [e.value for e in point.values()],
            "ci_low": low,
            "ci_high": high,
            "n": [e.n for e in point.values()],
            "note": [e.note for e in point.values()],
        }
    )
    undefined = table["value"].isna()
    table.loc[undefined, ["ci_low", "ci_high"]] = np.nan
    return table


def summarize_by_domain(
    domains: Sequence[str],
    estimate: Estimator,
    *,
    n_resamples: int,
    confidence_level: float,
    seed: int,
) -> pd.DataFrame:
    """``estimate_with_intervals`` for each domain's rows and for all rows (domain ``ALL_DOMAINS``).

    ``estimate`` takes row positions into the table that ``domains`` labels.
    """
    domains = np.asarray(domains, dtype=object)
    groups = {domain: np.flatnonzero(domains == domain) for domain in sorted(set(domains))}
    groups[ALL_DOMAINS] = np.arange(len(domains))
    frames = [
        estimate_with_intervals(
            lambda items, rows=rows: estimate(rows[items]),
            len(rows),
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            seed=seed,
        ).assign(domain=domain)
        for domain, rows in groups.items()
    ]
    return pd.concat(frames, ignore_index=True)[["domain", *METRIC_COLUMNS]]
