"""Distributional self-calibration (metasyn.metacognition.distributional): parsing, smoothing, KL, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from metasyn.metacognition.distributional import (
    PER_PROMPT_COLUMNS,
    answer_messages,
    distributional_calibration,
    empirical_distribution,
    kl_divergence,
    load_open_prompts,
    normalize_answer,
    parse_reported_distribution,
    report_distributions,
    report_messages,
    sample_open_answers,
    smoothed_reported,
)


def test_the_shipped_prompts_are_open_single_answer_prompts_with_unique_ids():
    prompts = load_open_prompts()
    assert list(prompts.columns) == ["prompt_id", "prompt"]
    assert len(prompts) >= 10
    assert prompts["prompt_id"].is_unique
    assert {"Name an animal.", "Name a colour.", "Name a country.", "Pick a number from 1 to 10."} <= set(
        prompts["prompt"]
    )


def test_the_report_prompt_quotes_the_sampling_prompt_and_asks_for_five_answers_with_probabilities():
    sampling = answer_messages("Name an animal.")[0]["content"]
    report = report_messages("Name an animal.")[0]["content"]
    assert "one word or number" in sampling
    assert sampling in report
    assert "five" in report and "<answer>: <probability>" in report


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dog", "dog"),
        ("  The Dog.\nDogs are loyal.", "dog"),
        ("\n\nAn apple!", "apple"),
        ("7", "7"),
        ("**Blue**", "blue"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_answer_reads_the_first_line_without_case_punctuation_or_articles(text, expected):
    assert normalize_answer(text) == expected
    assert normalize_answer(normalize_answer(text)) == expected


def test_empirical_distribution_normalises_answers_and_drops_empty_ones():
    assert empirical_distribution(["Dog", "dog.", "a cat", "", "!!", "The Cat"]) == {"dog": 0.5, "cat": 0.5}
    assert empirical_distribution(["", "?"]) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dog: 0.3", {"dog": 0.3}),
        ("1. cat - 25%", {"cat": 0.25}),
        ("bird (0.1)", {"bird": 0.1}),
        ("- Fish = .05", {"fish": 0.05}),
        ("2) Horse – 10 percent", {"horse": 0.1}),
        ("**Dog**: 0,4", {"dog": 0.4}),
        ("Dog: 30", {"dog": 0.3}),  # a whole number above 1 is a percentage, as after a confidence label
        ("Guinea-Bissau: 0.1", {"guinea bissau": 0.1}),
        ("1. 7: 0.4\n2. 3: 0.2", {"7": 0.4, "3": 0.2}),  # answers that are numbers keep their list marker apart
        ("Dog: 0.3\nthe dog: 0.1\nCat: 0.2", {"dog": 0.4, "cat": 0.2}),  # repeats are summed
        ("Here are my answers:\nDog: 0.5\n\nThat is all.", {"dog": 0.5}),
        ("Dog: 1.5", {}),  # out of range
        ("Dog: 150%", {}),
        ("Dog", {}),
        ("Dog 0.3", {}),  # no separator
        (": 0.3", {}),  # no answer
        ("", {}),
    ],
)
def test_parse_reported_distribution_reads_each_format(text, expected):
    assert parse_reported_distribution(text) == pytest.approx(expected)


def test_smoothing_keeps_a_report_that_lists_every_sampled_answer():
    assert smoothed_reported({"dog": 0.6, "cat": 0.3}, ["dog", "cat"], 0.05) == pytest.approx({"dog": 0.6, "cat": 0.3})
    # Overcommitted: read as relative.
    assert smoothed_reported({"dog": 1.0, "cat": 1.0}, ["dog"], 0.05) == pytest.approx({"dog": 0.5, "cat": 0.5})


def test_smoothing_reserves_epsilon_and_spreads_the_left_over_over_at_least_one_over_epsilon_answers():
    # Listed sum 1.2 > 1 - 0.05: scaled to 0.95 (dog 0.95 * 0.8/1.2, cat 0.95 * 0.4/1.2); the left-over 0.05 over
    # max(2 unlisted, 1/0.05 = 20) answers: 0.0025 each for bird and fish; "zebra" (never sampled) keeps its mass.
    smoothed = smoothed_reported({"dog": 0.8, "zebra": 0.4, "cat": 0.0}, ["dog", "cat", "bird"], 0.05)
    assert smoothed == pytest.approx({"dog": 0.95 * 2 / 3, "zebra": 0.95 / 3, "cat": 0.0025, "bird": 0.0025})
    # More unlisted answers than 1/epsilon share the left-over among themselves alone.
    many = [f"answer {n}" for n in range(40)]
    assert sum(smoothed_reported({}, many, 0.05).values()) == pytest.approx(1.0)


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -0.1])
def test_smoothing_refuses_an_epsilon_outside_the_unit_interval(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        smoothed_reported({}, ["dog"], epsilon)


def test_kl_of_identical_distributions_is_zero():
    distribution = {"dog": 0.5, "cat": 0.3, "bird": 0.2}
    assert kl_divergence(distribution, distribution, 0.05) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_a_hand_made_pair_with_an_unlisted_answer():
    empirical = {"dog": 0.5, "cat": 0.3, "bird": 0.2}
    reported = {"dog": 0.6, "cat": 0.3}
    # Listed sum 0.9 <= 1 - 0.05, kept. Left-over L = 0.1 over max(|U| = 1, 1/0.05 = 20) answers: bird gets 0.005.
    # KL = 0.5 ln(0.5 / 0.6) + 0.3 ln(0.3 / 0.3) + 0.2 ln(0.2 / 0.005)
    #    = 0.5 * (-0.182322) + 0 + 0.2 * 3.688879 = -0.091161 + 0.737776 = 0.646615
    assert kl_divergence(empirical, reported, 0.05) == pytest.approx(0.646615, abs=1e-6)


def test_kl_of_an_empty_report_is_log_one_over_epsilon_minus_the_entropy():
    # Each sampled answer gets 1 / max(K, 1/epsilon) = epsilon (K <= 20): KL = sum p ln(p / eps) = ln(1/eps) - H(p).
    assert kl_divergence({"dog": 1.0}, {}, 0.05) == pytest.approx(math.log(20))
    uniform = {f"answer {n}": 0.1 for n in range(10)}
    assert kl_divergence(uniform, {}, 0.05) == pytest.approx(math.log(20) - math.log(10))
    # Beyond 1/epsilon distinct answers the empty report is the uniform distribution over them.
    many = {f"answer {n}": 1 / 40 for n in range(40)}
    assert kl_divergence(many, {}, 0.05) == pytest.approx(0.0, abs=1e-12)


def test_kl_grows_as_the_report_moves_away_from_the_empirical_distribution():
    empirical = {"dog": 0.6, "cat": 0.4}
    reports = [{"dog": 0.6, "cat": 0.4}, {"dog": 0.7, "cat": 0.3}, {"dog": 0.85, "cat": 0.15}, {"dog": 1.0}]
    kls = [kl_divergence(empirical, report, 0.05) for report in reports]
    assert kls[0] == pytest.approx(0.0, abs=1e-12)
    assert all(earlier < later for earlier, later in zip(kls, kls[1:], strict=False))


def test_kl_of_nothing_sampled_is_undefined():
    assert math.isnan(kl_divergence({}, {"dog": 1.0}, 0.05))


def _simulated_samples(n_prompts: int, n_samples: int, seed: int) -> tuple[pd.DataFrame, list[dict[str, float]]]:
    """Samples from a known answer distribution per prompt (5 answers, Dirichlet weights), and those distributions."""
    rng = np.random.default_rng(seed)
    rows, truths = [], []
    for prompt in range(n_prompts):
        answers = [f"p{prompt} answer {n}" for n in range(5)]
        weights = rng.dirichlet(np.ones(5))
        truths.append(dict(zip(answers, weights, strict=True)))
        drawn = rng.choice(answers, size=n_samples, p=weights)
        rows += [{"prompt_id": f"p{prompt}", "sample": i, "answer": answer} for i, answer in enumerate(drawn)]
    return pd.DataFrame(rows), truths


def _reports(distributions: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame({
        "prompt_id": [f"p{prompt}" for prompt in range(len(distributions))],
        "text": "",
        "reported": [json.dumps(distribution) for distribution in distributions],
    })  # fmt: skip


def test_a_model_that_reports_its_own_distribution_scores_near_zero_and_one_that_misreports_scores_far_above():
    samples, truths = _simulated_samples(n_prompts=10, n_samples=100, seed=0)
    calibrated, calibrated_summary = distributional_calibration(samples, _reports(truths), 0.05, 1000, 0.95, 0)
    wrong = [{"never sampled": 1.0} for _ in truths]
    misreporting, misreporting_summary = distributional_calibration(samples, _reports(wrong), 0.05, 1000, 0.95, 0)

    assert list(calibrated.columns) == PER_PROMPT_COLUMNS
    assert calibrated_summary["n"] == misreporting_summary["n"] == 10
    # Sampling noise alone: about (K - 1) / (2 n) = 0.02 nats per prompt.
    assert calibrated_summary["ci_low"] <= calibrated_summary["mean_kl"] <= calibrated_summary["ci_high"] < 0.1
    # All mass elsewhere: each sampled answer gets 0.05 / 20, so KL = ln(400) - H(p), several nats.
    assert misreporting_summary["ci_low"] > 3 > calibrated_summary["ci_high"]
    assert (calibrated["n_listed_sampled"] == calibrated["n_distinct"]).all()
    assert (misreporting["n_listed_sampled"] == 0).all()
    assert misreporting["listed_mass"].tolist() == [1.0] * 10
    assert (calibrated["n_samples"] == 100).all()


def test_per_prompt_statistics_count_empty_samples_and_listed_answers():
    samples = pd.DataFrame({"prompt_id": ["a"] * 4 + ["b"] * 2, "answer": ["dog", "dog", "cat", "", "", ""]})
    reports = _reports([{"dog": 0.5, "bird": 0.25}, {"dog": 1.0}]).assign(prompt_id=["a", "b"])
    per_prompt, summary = distributional_calibration(samples, reports, 0.05, 200, 0.9, 1)
    first, second = per_prompt.to_dict("records")
    assert first == {
        "prompt_id": "a",
        # dog 2/3, cat 1/3; listed 0.75 kept, cat gets 0.25 / 20.
        "kl": pytest.approx(2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.0125)),
        "n_samples": 4,
        "n_empty": 1,
        "n_distinct": 2,
        "n_listed": 2,
        "n_listed_sampled": 1,
        "listed_mass": 0.75,
    }
    assert second["n_empty"] == 2 and math.isnan(second["kl"])
    assert summary["n"] == 1
    assert summary["mean_kl"] == summary["ci_low"] == summary["ci_high"] == pytest.approx(first["kl"])


def test_the_summary_is_seeded_and_its_inputs_checked():
    samples, truths = _simulated_samples(n_prompts=8, n_samples=50, seed=3)
    reports = _reports([{answer: 0.2 for answer in truth} for truth in truths])
    assert (
        distributional_calibration(samples, reports, 0.05, 300, 0.95, 7)[1]
        == (distributional_calibration(samples, reports, 0.05, 300, 0.95, 7)[1])
    )
    with pytest.raises(ValueError, match="confidence_level"):
        distributional_calibration(samples, reports, 0.05, 300, 95, 7)
    with pytest.raises(ValueError, match="No report"):
        distributional_calibration(samples, reports.iloc[1:], 0.05, 300, 0.95, 7)


def test_a_tiny_model_samples_seeded_answers_and_reports_once_per_prompt(one_torch_thread):
    from tests.pipelines.finetune.tiny import tiny_llama

    lm = tiny_llama()
    prompts = load_open_prompts().head(3)
    samples = sample_open_answers(lm, prompts, n_samples=4, temperature=1.0, max_new_tokens=6, batch_size=2, seed=5)
    again = sample_open_answers(lm, prompts, n_samples=4, temperature=1.0, max_new_tokens=6, batch_size=2, seed=5)
    assert list(samples.columns) == ["prompt_id", "sample", "text", "answer"]
    assert len(samples) == 3 * 4
    assert samples["prompt_id"].tolist() == [prompt for prompt in prompts["prompt_id"] for _ in range(4)]
    assert samples["sample"].tolist() == list(range(4)) * 3
    assert samples["text"].tolist() == again["text"].tolist()
    assert samples["answer"].tolist() == [normalize_answer(text) for text in samples["text"]]

    reports = report_distributions(lm, prompts, max_new_tokens=12, batch_size=2)
    assert reports["prompt_id"].tolist() == prompts["prompt_id"].tolist()
    assert all(isinstance(json.loads(reported), dict) for reported in reports["reported"])
    # A random model writes noise; whatever it reports, the smoothing gives every prompt with an answer a finite KL.
    per_prompt, _ = distributional_calibration(samples, reports, 0.05, 50, 0.95, 0)
    assert np.isfinite(per_prompt["kl"].dropna()).all()
    assert len(per_prompt) == len(prompts)
