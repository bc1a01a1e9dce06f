"""The judgment variant: ability classes at their boundaries, the prompt and target, reading the class back, and
its evaluation (exact match in both directions, the confusion matrix, the figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metasyn.lm.answers import extract_answer
from metasyn.metacognition.calibration import estimate_with_intervals
from metasyn.metacognition.judgment import (
    ABILITY_CLASSES,
    ability_class,
    ability_classes,
    confusion_figure,
    confusion_matrix,
    judgment_completion,
    judgment_messages,
    judgment_metrics,
    judgment_settled,
    parse_judgment,
)

BOOTSTRAP = {"n_resamples": 500, "confidence_level": 0.95, "seed": 0}
QUESTION = {"question": "What is 6 times 7?", "choices": None, "domain": "gsm8k"}

# ----------------------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    ("accuracy", "expected"),
    [
        (1.0, "can"),
        (10 / 10, "can"),
        (0.9, "uncertain"),
        (9 / 10, "uncertain"),
        (0.5, "uncertain"),
        (5 / 10, "uncertain"),
        (0.4999, "cannot"),
        (4 / 10, "cannot"),
        (0.0, "cannot"),
    ],
)
def test_ability_class_at_the_100_and_50_percent_boundaries(accuracy, expected):
    assert ability_class(accuracy) == expected


def test_accuracies_computed_as_means_of_samples_land_on_their_exact_class():
    # Ten samples' accuracy as a mean or a sum of tenths: rounding must not move 10/10 or 5/10 off its boundary.
    assert ability_class(float(np.mean([True] * 10))) == "can"
    assert ability_class(sum([0.1] * 10)) == "can"  # 0.9999999999999999
    assert ability_class(float(np.mean([True] * 5 + [False] * 5))) == "uncertain"
    assert ability_class(sum([0.1] * 5)) == "uncertain"
    assert ability_class(1 - sum([0.1] * 5)) == "uncertain"


@pytest.mark.parametrize("accuracy", [-0.1, 1.1, float("nan")])
def test_an_accuracy_outside_0_1_has_no_class(accuracy):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ability_class(accuracy)


def test_ability_classes_from_integer_counts_with_n_10():
    counts = np.arange(11)
    expected = ["cannot"] * 5 + ["uncertain"] * 5 + ["can"]
    assert list(ability_classes(counts, 10)) == expected
    assert list(ability_classes(counts, 10)) == [ability_class(k / 10) for k in counts]


def test_ability_classes_with_per_question_sample_counts():
    # An odd count: 2 of 5 is below half, 3 of 5 above; 1 of 2 is exactly half.
    assert list(ability_classes([2, 3, 5, 1, 0], [5, 5, 5, 2, 1])) == [
        "cannot",
        "uncertain",
        "can",
        "uncertain",
        "cannot",
    ]


@pytest.mark.parametrize(
    ("counts", "n_samples"),
    [([11], 10), ([-1], 10), ([0], 0), ([0.5], 10)],
)
def test_ability_classes_refuse_impossible_counts(counts, n_samples):
    with pytest.raises(ValueError):
        ability_classes(counts, n_samples)


# -------------------------------------------------------------------------------------- prompt, target


def test_the_prompt_asks_for_the_judgment_first_then_the_answer_in_the_question_format():
    content = judgment_messages(QUESTION)[0]["content"]
    assert content.startswith("What is 6 times 7?")
    assert "Give the final answer as a number." in content
    assert content.index("'Judgment: <can, uncertain or cannot>'") < content.index("'Answer: <answer>'")


def test_a_multiple_choice_prompt_lists_its_options():
    question = {"question": "Which is a prime?", "choices": ["4", "7"], "domain": "multiple_choice"}
    content = judgment_messages(question)[0]["content"]
    assert "A. 4\nB. 7" in content
    assert "letter of the correct option" in content


@pytest.mark.parametrize("ability", ABILITY_CLASSES)
def test_the_target_reads_back_as_its_class_and_answer(ability):
    completion = judgment_completion(ability, "42")
    assert completion == f"Judgment: {ability}\nAnswer: 42"
    assert parse_judgment(completion) == ability
    assert extract_answer(completion, "number") == "42"


def test_a_target_needs_a_known_class():
    with pytest.raises(ValueError, match="Unknown ability class"):
        judgment_completion("maybe", "42")


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Judgment: can\nAnswer: 42", "can"),
        ("Judgment: cannot\nAnswer: 42", "cannot"),
        ("Judgment: uncertain\nAnswer: 42", "uncertain"),
        ("judgment: CAN", "can"),
        ("**Judgment:** *Cannot*", "cannot"),
        ("Judgment: uncertain.", "uncertain"),
        ("Judgement: can!", "can"),
        ("Judgment: <cannot>", "cannot"),
        ("Judgment: can't\nAnswer: 7", "cannot"),
        ("Judgment: can’t", "cannot"),
        ("Judgment: can not", "cannot"),
        ("Judgment: can, I think", "can"),
        ("Sure.\nJudgment: uncertain\nAnswer: 3", "uncertain"),
        ("Cannot.\nAnswer: 42", "cannot"),
        ("can\nAnswer: 42", "can"),
        ("  Uncertain - it could be 41.", "uncertain"),
        ("Can't.", "cannot"),
        # Unreadable: no class where one is expected.
        ("Answer: 42", None),
        ("", None),
        ("Judgment: maybe\nAnswer: 42", None),
        ("Judgment: candidly, yes", None),
        ("Can you repeat the question?", None),
        ("can't answer that", None),
        ("I can answer this.\nAnswer: 42", None),
    ],
)
def test_parse_judgment(text, expected):
    assert parse_judgment(text) == expected


def test_cannot_is_never_read_as_can():
    for text in ["Judgment: cannot", "Judgment: CANNOT.", "cannot", "Judgment: can not", "Judgment: can't"]:
        assert parse_judgment(text) == "cannot", text


# ---------------------------------------------------------------------------------------------- metrics


def test_a_predictor_that_copies_the_truth_scores_exact_match_1_with_an_interval_at_1():
    truth = np.random.default_rng(1).choice(ABILITY_CLASSES, size=60).astype(object)
    table = estimate_with_intervals(
        lambda items: judgment_metrics(truth[items], truth[items], min_n=10), len(truth), **BOOTSTRAP
    ).set_index("metric")
    assert table.loc["judgment_exact_match", ["value", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["judgment_parse_rate", "value"] == 1.0
    for ability in ABILITY_CLASSES:
        assert table.loc[f"judgment_recall_{ability}", "value"] == 1.0


def test_a_predictor_that_ignores_the_truth_scores_chance():
    rng = np.random.default_rng(0)
    truth = rng.choice(ABILITY_CLASSES, size=300, p=[0.5, 0.3, 0.2]).astype(object)
    predicted = rng.choice(ABILITY_CLASSES, size=300, p=[0.2, 0.3, 0.5]).astype(object)
    table = estimate_with_intervals(
        lambda items: judgment_metrics(predicted[items], truth[items], min_n=10), len(truth), **BOOTSTRAP
    ).set_index("metric")
    # Independent guesses match with the probability that both land on the same class.
    truth_shares = pd.Series(truth).value_counts(normalize=True)
    predicted_shares = pd.Series(predicted).value_counts(normalize=True)
    chance = float((truth_shares * predicted_shares).sum())
    exact = table.loc["judgment_exact_match"]
    assert exact["value"] == pytest.approx(chance, abs=0.06)
    assert exact["ci_low"] <= chance <= exact["ci_high"]
    assert exact["ci_high"] < 1


def test_kappa_is_1_for_a_copy_0_for_the_commonest_class_and_above_0_for_a_planted_signal():
    rng = np.random.default_rng(2)
    truth = rng.choice(ABILITY_CLASSES, size=150, p=[0.1, 0.3, 0.6]).astype(object)

    def metrics(predicted):
        return estimate_with_intervals(
            lambda items: judgment_metrics(predicted[items], truth[items], min_n=10), len(truth), **BOOTSTRAP
        ).set_index("metric")

    assert metrics(truth).loc["judgment_kappa", "value"] == 1.0
    # Always the commonest class: exact match is that class's share (as the judgment fine-tune did), kappa 0.
    commonest = metrics(np.full(150, "cannot", dtype=object))
    assert commonest.loc["judgment_exact_match", "value"] == pytest.approx(np.mean(truth == "cannot"))
    assert commonest.loc["judgment_kappa", ["value", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    # The truth for 60% of the questions, a guess for the rest: kappa well above 0, its interval too.
    planted = np.where(rng.uniform(size=150) < 0.6, truth, rng.choice(ABILITY_CLASSES, size=150)).astype(object)
    kappa = metrics(planted).loc["judgment_kappa"]
    assert kappa["value"] > 0.5 and kappa["ci_low"] > 0.3
    # Guesses independent of the truth: an interval around 0.
    guessed = metrics(rng.choice(ABILITY_CLASSES, size=150, p=[0.1, 0.3, 0.6]).astype(object))
    assert guessed.loc["judgment_kappa", "ci_low"] <= 0 <= guessed.loc["judgment_kappa", "ci_high"]


def test_kappa_of_one_class_on_both_sides_is_undefined_and_says_why():
    kappa = judgment_metrics(["can"] * 12, ["can"] * 12, min_n=10)["judgment_kappa"]
    assert np.isnan(kappa.value) and kappa.n == 12 and "chance agreement is 1" in kappa.note
    assert judgment_metrics(["can", "cannot"], ["can", "can"], min_n=10)["judgment_kappa"].note.startswith("only 2")


def test_exact_match_and_recall_count_readable_judgments_only():
    truth = ["can", "can", "uncertain", "cannot"]
    predicted = ["can", None, "can", "cannot"]
    estimates = judgment_metrics(predicted, truth)
    assert estimates["judgment_parse_rate"] == (0.75, 4, "")
    assert estimates["judgment_exact_match"] == (2 / 3, 3, "")
    assert estimates["judgment_recall_can"] == (1.0, 1, "")
    assert estimates["judgment_recall_uncertain"] == (0.0, 1, "")
    assert estimates["judgment_recall_cannot"] == (1.0, 1, "")


def test_metrics_below_min_n_readable_judgments_are_undefined_with_the_reason():
    estimates = judgment_metrics(["can", None, None], ["can", "can", "cannot"], min_n=2)
    assert estimates["judgment_parse_rate"].value == pytest.approx(1 / 3)
    exact = estimates["judgment_exact_match"]
    assert np.isnan(exact.value) and exact.n == 1 and "only 1 readable judgments (minimum 2" in exact.note
    missing = estimates["judgment_recall_cannot"]
    assert np.isnan(missing.value) and missing.n == 0 and "'cannot' questions" in missing.note


def test_a_nan_prediction_from_a_table_column_is_unreadable():
    estimates = judgment_metrics(pd.Series(["can", np.nan]), ["can", "can"])
    assert estimates["judgment_parse_rate"].value == 0.5
    assert estimates["judgment_exact_match"].value == 1.0


@pytest.mark.parametrize(
    ("predicted", "truth"),
    [(["can"], ["can", "cannot"]), (["maybe"], ["can"]), (["can"], ["unknown"])],
)
def test_metrics_refuse_mismatched_or_unknown_classes(predicted, truth):
    with pytest.raises(ValueError):
        judgment_metrics(predicted, truth)


# ------------------------------------------------------------------------------------- confusion matrix

SIX_TRUTH = ["can", "can", "uncertain", "uncertain", "cannot", "cannot"]
SIX_PREDICTED = ["can", "uncertain", "uncertain", None, "can", "cannot"]


def test_confusion_matrix_of_six_items_equals_the_hand_written_table():
    expected = pd.DataFrame(
        [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]],
        index=pd.Index(["can", "uncertain", "cannot"], name="truth"),
        columns=pd.Index(["can", "uncertain", "cannot", "unreadable"], name="predicted"),
    )
    pd.testing.assert_frame_equal(confusion_matrix(SIX_PREDICTED, SIX_TRUTH), expected, check_dtype=False)


def test_the_unreadable_column_counts_none_predictions():
    matrix = confusion_matrix([None, None, "can", None], ["can", "cannot", "cannot", "cannot"])
    assert matrix["unreadable"].tolist() == [1, 0, 2]
    assert matrix.to_numpy().sum() == 4


def test_confusion_figure_draws_one_titled_heatmap_per_model():
    matrices = {
        "base": confusion_matrix(SIX_PREDICTED, SIX_TRUTH),
        "judgment": confusion_matrix(SIX_TRUTH, SIX_TRUTH),
        "silent": confusion_matrix([None] * 6, SIX_TRUTH),
    }
    figure = confusion_figure(matrices)
    assert isinstance(figure, Figure)
    heatmaps = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == [
        "base\nexact match 0.60 · readable 5/6",
        "judgment\nexact match 1.00 · readable 6/6",
        "silent\nno readable judgment · readable 0/6",
    ]
    annotations = [text.get_text() for text in heatmaps[0].texts]
    assert annotations == ["1", "1", "0", "0", "0", "1", "0", "1", "1", "0", "1", "0"]


@pytest.mark.parametrize(
    ("text", "settled"),
    [("Judgment: can", False), ("Judgment: can\n", True), ("Judgment: uncertain\nAnswer: 4", True),
     ("**Judgement:** cannot.\n", True), ("can\n", False), ("Judgment:\n", False), ("Judgment: I think\n", False)],
)  # fmt: skip
def test_a_judgment_is_settled_once_its_labelled_line_has_ended(text, settled):
    assert judgment_settled(text) is settled


def test_a_class_word_does_not_join_the_next_line():
    assert parse_judgment("Judgment: can\nnot sure what the answer is") == "can"
    assert parse_judgment("Judgment: can not") == "cannot"
