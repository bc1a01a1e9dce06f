"""The verdict is computed from the numbers: opposite inputs give opposite verdicts."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metasyn.comparison.report import (
    beyond_references,
    controls_sentence,
    judgement,
    ranking_reading,
    render_report,
    size_label,
    verdict,
)


def _calibration(ece_after: float, ece_change_ci: tuple[float, float], method: str = "forced") -> pd.DataFrame:
    rows = [
        ("base", "squared_ce_debiased", 0.30, 0.25, 0.35),
        ("metacog", "squared_ce_debiased", ece_after, ece_after - 0.05, ece_after + 0.05),
        ("metacog", "squared_ce_debiased_minus_base", ece_after - 0.30, *ece_change_ci),
        ("base", "auroc", 0.55, 0.5, 0.6),
        ("metacog", "auroc", 0.45, 0.4, 0.5),
        ("metacog", "auroc_minus_base", -0.10, -0.15, -0.05),
        ("base", "brier", 0.25, 0.2, 0.3),
        ("metacog", "brier", 0.25, 0.2, 0.3),
        ("metacog", "brier_minus_base", 0.0, -0.3, 0.3),
    ]
    return pd.DataFrame(
        [
            {"model": m, "method": method, "domain": "all", "metric": k, "value": v, "ci_low": lo, "ci_high": hi,
             "n": 40, "note": ""}
            for m, k, v, lo, hi in rows
        ]
    )  # fmt: skip


SETTINGS = {
    "band_name": "Mid-layer",
    "controls": ["control_shuffled"],
    "verdict": {
        "alpha": 0.05,
        "max_interval_width": {
            "peak_shift": 0.25,
            "band_contrast": 0.2,
            "squared_ce_debiased": 0.1,
            "auroc": 0.2,
            "brier": 0.1,
            "ablation_area": 0.2,
        },
    },
}


def _band(reference: str, estimate: float, ci: tuple[float, float]) -> dict:
    contrast = "metacog - base" if reference == "base" else f"(metacog - base) - ({reference} - base)"
    return {"contrast": contrast, "variant": "metacog", "reference": reference, "estimate": estimate,
            "ci_low": ci[0], "ci_high": ci[1], "n_prompts": 12, "n_resamples": 100}  # fmt: skip


def _shape(comparison: str, p_value: float, peak_ci: tuple[float, float]) -> list[dict]:
    return [
        {"comparison": comparison, "statistic": "l2_distance", "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.15,
         "p_value": p_value, "n_prompts": 12, "note": ""},
        {"comparison": comparison, "statistic": "peak_shift", "estimate": sum(peak_ci) / 2, "ci_low": peak_ci[0],
         "ci_high": peak_ci[1], "p_value": float("nan"), "n_prompts": 12, "note": ""},
    ]  # fmt: skip


def _synergy(band: float, band_ci, versus: float, versus_ci, p_value: float = 0.01, peak_ci=(0.2, 0.4)):
    """The synergy tables the verdict reads, for metacog against base and the control."""
    band_changes = pd.DataFrame([_band("base", band, band_ci), _band("control_shuffled", versus, versus_ci)])
    shape_changes = pd.DataFrame(
        _shape("metacog vs base", p_value, peak_ci) + _shape("metacog vs control_shuffled", 0.5, (-0.05, 0.05))
    )
    layer_changes = pd.DataFrame(
        [
            {"comparison": comparison, "quantity": quantity, "layer": layer, "estimate": 0.01, "p_value": 0.5,
             "q_value": 0.01 if (comparison, quantity, layer) == ("metacog vs base", "synergy", 2) else 0.6,
             "n_prompts": 12}
            for comparison in ("metacog vs base", "metacog vs control_shuffled")
            for quantity in ("synergy", "redundancy")
            for layer in range(4)
        ]
    )  # fmt: skip
    rankings = pd.DataFrame({"variant": ["metacog"], "spearman_rho": [0.57], "spearman_p": [0.01], "n_heads": [16],
                             "halves_cross": [0.2], "halves_within_base": [0.3], "halves_within_other": [0.32],
                             "halves_cross_minus_within": [-0.11], "halves_ci_low": [-0.2], "halves_ci_high": [0.0],
                             "halves_n_splits": [200], "halves_n_prompts": [12]})  # fmt: skip
    model_shapes = pd.DataFrame(
        [
            {"model": model, "statistic": statistic, "estimate": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
             "n_prompts": 12, "note": ""}
            for model, statistic, value in [
                ("base", "ranking_split_half_reliability", 0.62), ("metacog", "ranking_split_half_reliability", 0.55),
                ("base", "inverted_u_quadratic", 0.8), ("metacog", "inverted_u_quadratic", 0.7),
                ("random_init", "inverted_u_quadratic", 0.0),
            ]
        ]
    )  # fmt: skip
    return band_changes, shape_changes, layer_changes, rankings, model_shapes


def _verdict(calibration: pd.DataFrame, synergy_tables) -> str:
    return verdict(calibration, *synergy_tables, ["metacog"], SETTINGS, "forced")


def test_opposite_inputs_give_opposite_verdicts():
    improved = _verdict(_calibration(0.10, (-0.25, -0.15)), _synergy(0.2, (0.1, 0.3), 0.15, (0.05, 0.25)))
    worsened = _verdict(_calibration(0.50, (0.15, 0.25)), _synergy(-0.2, (-0.3, -0.1), -0.15, (-0.25, -0.05)))
    assert "Calibration of metacog (confidence elicited by 'forced')" in improved
    assert "debiased squared CE base 0.300 [0.250, 0.350] (n = 40), metacog 0.100 [0.050, 0.150] (n = 40); change on the 40 " \
        "questions both answered with a confidence -0.200 [-0.250, -0.150]: a change, an improvement" in improved  # fmt: skip
    assert "-0.200 [-0.250, -0.150]: a change, an improvement" in improved
    assert "0.200 [0.150, 0.250]: a change, a deterioration" in worsened
    assert (
        "contrast (band minus other layers) change 0.200 [0.100, 0.300] (bootstrap over prompts): a change" in improved
    )
    assert "change -0.200 [-0.300, -0.100] (bootstrap over prompts): a change" in worsened


def test_a_shape_change_is_reported_only_when_the_permutation_test_finds_one():
    found = _verdict(_calibration(0.1, (-0.25, -0.15)), _synergy(0.0, (-0.05, 0.05), 0.0, (-0.05, 0.05)))
    assert "**metacog vs base** (n = 12 prompts): layer-profile shape distance 0.100 [0.050, 0.150] with paired " \
        "permutation p = 0.010, peak-depth shift 0.300 [0.200, 0.400]: a change." in found  # fmt: skip
    # Not found, and the peak-shift interval is 0.8 wide (threshold 0.25): inconclusive, not "no change".
    wide = _verdict(
        _calibration(0.1, (-0.25, -0.15)), _synergy(0.0, (-0.05, 0.05), 0.0, (-0.05, 0.05), 0.4, (-0.4, 0.4))
    )
    assert "peak-depth shift 0.000 [-0.400, 0.400]: inconclusive at this size (95% interval 0.800 wide" in wide
    narrow = _verdict(
        _calibration(0.1, (-0.25, -0.15)), _synergy(0.0, (-0.05, 0.05), 0.0, (-0.05, 0.05), 0.4, (-0.1, 0.1))
    )
    assert "peak-depth shift 0.000 [-0.100, 0.100]: no change detected (95% interval 0.200 wide" in narrow
    # The band contrast follows the same rule: an interval 0.1 wide that covers 0 is "no change detected".
    assert "[-0.050, 0.050] (bootstrap over prompts): no change detected" in narrow


def test_the_verdict_names_layer_discoveries_noise_floors_and_every_models_inverted_u():
    text = _verdict(_calibration(0.1, (-0.25, -0.15)), _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert "synergy in 1 of 4 layers (layers 2); redundancy in 0 of 4 layers." in text
    assert "**metacog vs control_shuffled** (n = 12 prompts)" in text
    assert "Head ranking: Spearman rho with base 0.570 over 16 heads on the same prompts" in text
    assert ("base against metacog 0.200, base against itself 0.300, metacog against itself 0.320: cross minus "
            "their geometric mean -0.110 [-0.200, 0.000] (2.5-97.5% of the splits): 0 lies within, no ranking "
            "change beyond prompt noise.") in text  # fmt: skip
    assert "random_init 0.000 [-0.100, 0.100] (n = 12)" in text


def test_judgement_separates_change_inconclusive_and_no_change():
    assert judgement(True, 0.1, 0.3, 0.1) == "a change"
    assert judgement(False, -0.3, 0.3, 0.1).startswith("inconclusive at this size")
    assert judgement(False, -0.01, 0.01, 0.1).startswith("no change detected")
    assert judgement(False, float("nan"), float("nan"), 0.1).startswith("undefined")


def test_the_ranking_reading_follows_where_the_split_range_lies():
    assert ranking_reading(-0.09, -0.03).startswith("below 0 in nearly every split, a ranking change")
    assert ranking_reading(-0.05, 0.01).startswith("0 lies within, no ranking change")
    assert ranking_reading(0.02, 0.05).startswith("above 0 in nearly every split")
    assert ranking_reading(float("nan"), float("nan")).startswith("undefined")


def test_demo_sizes_are_named_and_study_sizes_are_not():
    sizes = {"prompts": 60, "test_questions": 500, "seeds": 3}
    assert size_label(12, 19, 3, sizes).startswith("**Demo sizes**: 12 synergy prompts (study: 60), 19 test questions")
    assert "synergy prompts" not in size_label(60, 19, 3, sizes)
    assert size_label(60, 700, 2, sizes).startswith("**Demo sizes**: 2 training seeds per variant (study: 3).")
    assert size_label(60, 700, 1, sizes).startswith("**Demo sizes**: 1 training seed per variant (study: 3).")
    assert size_label(60, 700, 3, sizes) == ""
    model = {"name_or_path": "/root/.cache/metasyn/embedded/smollm2-135m-instruct", "parameters": 134_515_008}
    assert size_label(60, 153, 2, sizes, model).startswith(
        "**Demo sizes** (a demo of smollm2-135m-instruct, a 135M-parameter model): 153 test questions (study: 500)"
    )
    assert size_label(60, 700, 3, sizes, model) == ""


def test_report_contains_verdict_tables_and_figure_links():
    calibration = _calibration(0.1, (-0.25, -0.15))
    band_changes, shape_changes, layer_changes, rankings, model_shapes = _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2))
    models = pd.DataFrame(
        {"name_or_path": ["/cache/gemma-3-4b-it"], "architecture": ["Gemma3ForConditionalGeneration"]}, index=["base"]
    )
    text = render_report(
        {"fine-tuned variants": "metacog"},
        models,
        "**Demo sizes**: small.",
        "VERDICT",
        calibration,
        band_changes,
        layer_changes,
        rankings,
        shape_changes,
        model_shapes,
        {"Layer profiles": "layer_profiles.png"},
        0.05,
    )
    assert text.startswith("# metasyn report\n\n**Demo sizes**: small.")
    assert "## Verdict\n\nVERDICT" in text
    assert "| base | /cache/gemma-3-4b-it | Gemma3ForConditionalGeneration |" in text
    assert "| metacog vs base | peak_shift | 0.300 |" in text
    assert "| random_init | inverted_u_quadratic | 0.000 |" in text
    assert "| metacog vs base | synergy | 4 | 1 | 0.010 | 0.010 | 12 |" in text
    assert "![Layer profiles](layer_profiles.png)" in text
    assert "| method | metric | base | metacog |" in text
    assert "| forced | squared_ce_debiased | 0.300 [0.250, 0.350] (n = 40) | 0.100 [0.050, 0.150] (n = 40) |" in text
    assert "paired t-test" not in text


def test_every_metric_is_judged_in_its_own_direction():
    """The calibration error and Brier fall when calibration improves; AUROC rises. A fall of AUROC is a deterioration."""
    text = _verdict(_calibration(0.10, (-0.25, -0.15)), _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert "AUROC base 0.550" in text and "-0.100 [-0.150, -0.050]: a change, a deterioration" in text
    # Brier's interval [-0.3, 0.3] is 0.6 wide, above the 0.1 accepted: not "no change".
    assert "0.000 [-0.300, 0.300]: inconclusive at this size" in text


def test_the_verdict_reads_only_its_own_elicitation_method():
    stated = _calibration(0.10, (-0.25, -0.15), method="stated")
    text = _verdict(stated, _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert "debiased squared CE was not measured for metacog under 'forced'" in text


def test_an_undefined_change_says_why_with_both_values_and_their_n():
    calibration = _calibration(0.10, (-0.25, -0.15))
    change = calibration["metric"] == "squared_ce_debiased_minus_base"
    calibration.loc[change, ["value", "ci_low", "ci_high"]] = float("nan")
    calibration.loc[change, "note"] = "only 3 answers with a confidence (minimum 20, calibration.metrics.min_n)"
    text = _verdict(calibration, _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert (
        "debiased squared CE change undefined (only 3 answers with a confidence (minimum 20, calibration.metrics.min_n)); "
        "base 0.300 [0.250, 0.350] (n = 40), metacog 0.100 [0.050, 0.150] (n = 40)"
    ) in text


def test_training_seeds_are_set_beside_every_change():
    calibration = _calibration(0.10, (-0.25, -0.15))
    second_seed = calibration[calibration["model"] == "metacog"].assign(model="metacog_seed1")
    second_seed.loc[second_seed["metric"] == "squared_ce_debiased_minus_base", "value"] = -0.05
    band_changes, shape_changes, layer_changes, rankings, model_shapes = _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2))
    seed_band = pd.DataFrame([_band("metacog", 0.01, (-0.05, 0.07))]).assign(
        variant="metacog_seed1", contrast="(metacog_seed1 - base) - (metacog - base)"
    )
    seed_shape = pd.DataFrame(_shape("metacog_seed1 vs metacog", 0.6, (-0.05, 0.05)))
    text = verdict(
        pd.concat([calibration, second_seed]),
        pd.concat([band_changes, seed_band], ignore_index=True),
        pd.concat([shape_changes, seed_shape], ignore_index=True),
        layer_changes,
        rankings,
        model_shapes,
        ["metacog"],
        SETTINGS,
        "forced",
        {"metacog": ["metacog", "metacog_seed1"]},
    )
    assert "Between training seeds of metacog ('forced'): debiased squared CE change by seed: metacog -0.200 [-0.250, -0.150] " \
        "(n = 40), metacog_seed1 -0.050 [-0.250, -0.150] (n = 40) (range 0.150)" in text  # fmt: skip
    assert "Between training seeds: **metacog_seed1 vs metacog** (n = 12 prompts)" in text
    assert "permutation p = 0.600" in text


# metacog against base, full and truncated: the L2 distance changes (p 0.01), the peak shift is interval-only.
METACOG_SENSITIVITY = [
    {"subject": "metacog vs base", "statistic": "l2_distance", "full_estimate": 0.1, "full_ci_low": 0.05,
     "full_ci_high": 0.15, "full_p_value": 0.01, "truncated_estimate": 0.08, "truncated_ci_low": 0.0,
     "truncated_ci_high": 0.2, "truncated_p_value": 0.2, "n_prompts_truncated": 7},
    {"subject": "metacog vs base", "statistic": "peak_shift", "full_estimate": 0.3, "full_ci_low": 0.2,
     "full_ci_high": 0.4, "full_p_value": float("nan"), "truncated_estimate": 0.1, "truncated_ci_low": -0.3,
     "truncated_ci_high": 0.5, "truncated_p_value": float("nan"), "n_prompts_truncated": 7},
]  # fmt: skip


def test_ablation_and_end_of_sequence_sentences_join_their_comparison():
    synergy_tables = _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2))
    ablation = pd.DataFrame([
        {"comparison": "metacog vs base", "statistic": "ablation_area_synergistic_first_change", "estimate": 0.3,
         "ci_low": 0.1, "ci_high": 0.5, "n_prompts": 12, "note": ""},
        {"comparison": "metacog vs base", "statistic": "ablation_area_redundant_first_change", "estimate": 0.0,
         "ci_low": -0.4, "ci_high": 0.4, "n_prompts": 12, "note": ""},
    ])  # fmt: skip
    sensitivity = pd.DataFrame(METACOG_SENSITIVITY)
    text = verdict(_calibration(0.1, (-0.25, -0.15)), *synergy_tables, ["metacog"], SETTINGS, "forced", None,
                   ablation, sensitivity)  # fmt: skip
    assert "synergistic-first 0.300 [0.100, 0.500] (n = 12 prompts): a change" in text
    assert "redundant-first 0.000 [-0.400, 0.400] (n = 12 prompts): inconclusive at this size" in text
    assert ("On the steps before each prompt's natural end (n = 7 prompts long enough): shape distance p = 0.200 "
            "(full length 0.010), peak-depth shift 0.100 [-0.300, 0.500] (full length 0.300).") in text  # fmt: skip
    # Only the comparison they belong to carries them.
    control = next(line for line in text.split("\n\n") if line.startswith("**metacog vs control_shuffled**"))
    assert "Ablation area" not in control and "natural end" not in control


def test_the_calibration_sentence_opens_with_the_accuracy_change():
    calibration = _calibration(0.10, (-0.25, -0.15))
    answer = [("base", "accuracy", 0.40, 0.27, 0.57), ("metacog", "accuracy", 0.11, 0.03, 0.22),
              ("metacog", "accuracy_minus_base", -0.29, -0.43, -0.16)]  # fmt: skip
    calibration = pd.concat([calibration, pd.DataFrame([
        {"model": m, "method": "answer", "domain": "all", "metric": k, "value": v, "ci_low": lo, "ci_high": hi,
         "n": 37, "note": ""} for m, k, v, lo, hi in answer
    ])])  # fmt: skip
    text = _verdict(calibration, _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert ("Calibration of metacog (confidence elicited by 'forced'): accuracy base 0.400 [0.270, 0.570] (n = 37), "
            "metacog 0.110 [0.030, 0.220] (n = 37), change -0.290 [-0.430, -0.160]; debiased squared CE base") in text  # fmt: skip


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


def test_judgement_states_the_interval_width_against_the_accepted_one_and_a_width_at_the_limit_is_accepted():
    assert (
        judgement(False, -0.3, 0.3, 0.1)
        == "inconclusive at this size (95% interval 0.600 wide, above the 0.100 accepted)"
    )
    assert (
        judgement(False, -0.01, 0.01, 0.1) == "no change detected (95% interval 0.020 wide, within the 0.100 accepted)"
    )
    assert judgement(False, -0.25, 0.25, 0.5).startswith("no change detected (95% interval 0.500 wide")  # 0.5 <= 0.5
    assert judgement(False, 0.0, float("inf"), 0.1) == "undefined (no interval)"
    assert judgement(True, float("nan"), float("nan"), 0.1) == "a change"  # detection is decided by the caller


def test_an_interval_excludes_zero_only_when_both_ends_are_finite_and_on_one_side():
    from metasyn.comparison.report import _excludes_zero

    assert _excludes_zero(0.1, 0.2) and _excludes_zero(-0.2, -0.1)
    assert not _excludes_zero(0.0, 0.2) and not _excludes_zero(-0.2, 0.0)  # touching zero is not excluding it
    assert not _excludes_zero(-0.1, 0.1)
    assert not _excludes_zero(float("nan"), 0.2) and not _excludes_zero(0.1, float("nan"))
    assert not _excludes_zero(0.1, float("inf"))


def test_numbers_in_the_verdict_have_three_decimals_and_missing_ones_read_n_a():
    from metasyn.comparison.report import _interval, _number

    assert _number(0.12345) == "0.123" and _number(2.0, digits=1) == "2.0"
    assert _number(None) == "n/a" and _number(float("nan")) == "n/a" and _number(float("-inf")) == "n/a"
    assert _interval(-0.25, float("nan")) == "[-0.250, n/a]"


def test_size_label_names_every_short_size_and_a_size_at_the_study_size_is_not_short():
    sizes = {"prompts": 60, "test_questions": 500, "seeds": 3}
    assert size_label(12, 19, 2, sizes) == (
        "**Demo sizes**: 12 synergy prompts (study: 60), 19 test questions (study: 500), 2 training seeds per "
        "variant (study: 3). The intervals below are as wide as these sizes make them; read this run as a check "
        "of the method, not as the study's answer."
    )
    assert size_label(60, 500, 3, sizes) == ""


def test_the_calibration_sentence_names_each_metrics_change_improvement_or_deterioration():
    from metasyn.comparison.report import calibration_sentence

    sentence = calibration_sentence(_calibration(0.1, (-0.25, -0.15)), "metacog", "forced", SETTINGS["verdict"])
    assert sentence == (
        "Calibration of metacog (confidence elicited by 'forced'): "
        "debiased squared CE base 0.300 [0.250, 0.350] (n = 40), metacog 0.100 [0.050, 0.150] (n = 40); change on the 40 questions "
        "both answered with a confidence -0.200 [-0.250, -0.150]: a change, an improvement; "  # a lower error: better
        "AUROC base 0.550 [0.500, 0.600] (n = 40), metacog 0.450 [0.400, 0.500] (n = 40); change on the 40 questions "
        "both answered with a confidence -0.100 [-0.150, -0.050]: a change, a deterioration; "  # lower AUROC: worse
        "Brier base 0.250 [0.200, 0.300] (n = 40), metacog 0.250 [0.200, 0.300] (n = 40); change on the 40 "
        "questions both answered with a confidence 0.000 [-0.300, 0.300]: inconclusive at this size (95% interval "
        "0.600 wide, above the 0.100 accepted)."
    )
    worse = calibration_sentence(_calibration(0.5, (0.15, 0.25)), "metacog", "forced", SETTINGS["verdict"])
    assert "confidence 0.200 [0.150, 0.250]: a change, a deterioration; AUROC" in worse  # a higher error is worse


def test_the_calibration_sentence_says_why_a_change_is_undefined_or_not_measured():
    from metasyn.comparison.report import calibration_sentence

    calibration = _calibration(0.1, (-0.25, -0.15))
    undefined = calibration["metric"] == "auroc_minus_base"
    calibration.loc[undefined, ["value", "note"]] = [float("nan"), "one class only"]
    calibration = calibration[calibration["metric"] != "brier_minus_base"]
    sentence = calibration_sentence(calibration, "metacog", "forced", SETTINGS["verdict"])
    assert (
        "; AUROC change undefined (one class only); base 0.550 [0.500, 0.600] (n = 40), metacog 0.450 [0.400, 0.500] "
        "(n = 40); Brier was not measured for metacog under 'forced'." in sentence
    )
    calibration.loc[undefined, "note"] = ""
    assert "AUROC change undefined (undefined); base" in calibration_sentence(
        calibration, "metacog", "forced", SETTINGS["verdict"]
    )
    assert calibration_sentence(calibration, "metacog", "verbal", SETTINGS["verdict"]) == (
        "Calibration of metacog (confidence elicited by 'verbal'): debiased squared CE was not measured for metacog under 'verbal'; "
        "AUROC was not measured for metacog under 'verbal'; Brier was not measured for metacog under 'verbal'."
    )


def test_the_calibration_sentence_starts_with_the_accuracy_change():
    from metasyn.comparison.report import calibration_sentence
    from metasyn.metacognition.evaluation import ANSWER_METHOD

    accuracy = pd.DataFrame(
        [
            {"model": m, "method": ANSWER_METHOD, "domain": "all", "metric": k, "value": v, "ci_low": lo,
             "ci_high": hi, "n": 50, "note": ""}
            for m, k, v, lo, hi in [("base", "accuracy", 0.4, 0.3, 0.5), ("metacog", "accuracy", 0.5, 0.4, 0.6),
                                    ("metacog", "accuracy_minus_base", 0.1, 0.0, 0.2)]
        ]
    )  # fmt: skip
    calibration = pd.concat([_calibration(0.1, (-0.25, -0.15)), accuracy], ignore_index=True)
    sentence = calibration_sentence(calibration, "metacog", "forced", SETTINGS["verdict"])
    assert sentence.startswith(
        "Calibration of metacog (confidence elicited by 'forced'): accuracy base 0.400 [0.300, 0.500] (n = 50), "
        "metacog 0.500 [0.400, 0.600] (n = 50), change 0.100 [0.000, 0.200]; debiased squared CE base 0.300"
    )


# The whole verdict and the whole report, word for word, against files read and checked by hand
# (tests/data/report/): every sentence, table and optional section, with every input the report can take.

GOLDEN = Path(__file__).parent / "data" / "report"


def _full_inputs() -> dict:
    """Every table the verdict and the report read: two seeds, ablation, end-of-sequence, run records."""
    calibration = _calibration(0.10, (-0.25, -0.15))
    second_seed = calibration[calibration["model"] == "metacog"].assign(model="metacog_seed1")
    second_seed.loc[second_seed["metric"] == "squared_ce_debiased_minus_base", "value"] = -0.05
    second_seed.loc[second_seed["metric"] == "brier_minus_base", "value"] = float("nan")
    calibration = pd.concat([calibration, second_seed], ignore_index=True)
    band_changes, shape_changes, layer_changes, rankings, model_shapes = _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2))
    seed_band = pd.DataFrame([_band("metacog", 0.01, (-0.05, 0.07))]).assign(
        variant="metacog_seed1", contrast="(metacog_seed1 - base) - (metacog - base)"
    )
    band_changes = pd.concat([band_changes, seed_band], ignore_index=True)
    shape_changes = pd.concat(
        [shape_changes, pd.DataFrame(_shape("metacog_seed1 vs metacog", 0.6, (-0.05, 0.05)))], ignore_index=True
    )
    seed_layers = layer_changes[layer_changes["comparison"] == "metacog vs base"].assign(
        comparison="metacog_seed1 vs metacog", q_value=[0.04, 0.5, 0.03, 0.2, 0.6, 0.6, 0.6, 0.6],
        estimate=[0.01, -0.02, 0.03, 0.0, 0.01, 0.01, -0.05, 0.01], n_prompts=11,
    )  # fmt: skip
    layer_changes = pd.concat([layer_changes, seed_layers], ignore_index=True)
    model_shapes = pd.concat(
        [model_shapes, pd.DataFrame([
            {"model": "base", "statistic": "ablation_area_synergistic_first", "estimate": 0.25, "ci_low": 0.05,
             "ci_high": 0.45, "n_prompts": 12, "note": "interval over prompts and 3 random orders"},
        ])], ignore_index=True,
    )  # fmt: skip
    ablation = pd.DataFrame([
        {"comparison": "metacog vs base", "statistic": "ablation_area_synergistic_first_change", "estimate": 0.3,
         "ci_low": 0.1, "ci_high": 0.5, "n_prompts": 12, "note": "paired over prompts; 3 random orders resampled"},
        {"comparison": "metacog vs base", "statistic": "ablation_area_redundant_first_change", "estimate": 0.0,
         "ci_low": -0.05, "ci_high": 0.05, "n_prompts": 12, "note": "paired over prompts; 3 random orders resampled"},
    ])  # fmt: skip
    sensitivity = pd.DataFrame([
        *METACOG_SENSITIVITY,
        {"subject": "base", "statistic": "inverted_u_quadratic", "full_estimate": 0.8, "full_ci_low": 0.7,
         "full_ci_high": 0.9, "full_p_value": float("nan"), "truncated_estimate": 0.6, "truncated_ci_low": 0.4,
         "truncated_ci_high": 0.8, "truncated_p_value": float("nan"), "n_prompts_truncated": 9},
    ])  # fmt: skip
    natural_ends = pd.DataFrame([
        {"model": "base", "category": "all", "prompts": 12, "ended_share": 0.75, "median_natural_end": 31.5,
         "analysed_share": 0.5},
    ])  # fmt: skip
    return {"calibration": calibration, "band_changes": band_changes, "shape_changes": shape_changes,
            "layer_changes": layer_changes, "rankings": rankings, "model_shapes": model_shapes,
            "ablation": ablation, "sensitivity": sensitivity, "natural_ends": natural_ends}  # fmt: skip


RUN_RECORDS = [
    {"run_id": "2026-12-01T10.00.00.000Z", "started": "2026-12-01T10:00:00Z",
     "nodes": [{"name": "score", "seconds": 30.0}, {"name": "load", "seconds": 10.0}]},
    {"run_id": "2026-12-02T09.00.00.000Z", "started": "2026-12-02T09:00:00Z", "environment": "demo",
     "pipeline": "comparison", "python": "3.11.9", "git": {"commit": "abc1234", "dirty": True},
     "device": {"kind": "cuda", "names": ["H200", "H200"]},
     "packages": {"torch": "2.5.1", "numpy": "2.1.0", "missing": None},
     "nodes": [{"name": "report", "seconds": 1.0}, {"name": "score", "seconds": 9.0}]},
]  # fmt: skip


def _full_verdict(tables: dict) -> str:
    return verdict(
        tables["calibration"], tables["band_changes"], tables["shape_changes"], tables["layer_changes"],
        tables["rankings"], tables["model_shapes"], ["metacog"], SETTINGS, "forced",
        {"metacog": ["metacog", "metacog_seed1"]}, tables["ablation"], tables["sensitivity"],
    )  # fmt: skip


def _full_report(tables: dict) -> str:
    models = pd.DataFrame(
        {"name_or_path": ["/cache/gemma-3-4b-it", "/runs/metacog"], "layers": [34, 34]}, index=["base", "metacog"]
    )
    return render_report(
        {"fine-tuned variants": "metacog", "seeds": [0, 1]}, models, "**Demo sizes**: small.", "VERDICT",
        tables["calibration"], tables["band_changes"], tables["layer_changes"], tables["rankings"],
        tables["shape_changes"], tables["model_shapes"],
        {"Layer profiles": "layer_profiles.png", "Ablation": "figures/ablation.png"}, 0.05,
        RUN_RECORDS[1], RUN_RECORDS, tables["ablation"], tables["sensitivity"], tables["natural_ends"],
    )  # fmt: skip


def test_the_whole_verdict_word_for_word():
    assert _full_verdict(_full_inputs()) == (GOLDEN / "verdict.md").read_text()


def test_the_whole_report_word_for_word():
    assert _full_report(_full_inputs()) == (GOLDEN / "report.md").read_text()


def test_a_report_without_the_optional_inputs_leaves_their_sections_out_and_says_there_is_no_run_record():
    tables = _full_inputs()
    text = render_report(
        {}, pd.DataFrame({"layers": [34]}, index=["base"]), "", "VERDICT", tables["calibration"],
        tables["band_changes"], tables["layer_changes"], tables["rankings"], tables["shape_changes"],
        tables["model_shapes"], {}, 0.05, None, (), None, tables["sensitivity"], None,
    )  # fmt: skip
    assert text.startswith("# metasyn report\n\nDoes fine-tuning")
    assert "## Configuration\n\n\n\nModels as loaded" in text
    assert "ablation area changes" not in text and "end-of-sequence sensitivity" not in text  # no natural ends
    assert "Wall time of each node" not in text
    assert text.endswith(
        "`data/08_reporting/comparison/<output>/<run id>/`):\n\n"
        "- **run**: no run record (run outside a Kedro session)\n\n## Figures\n\n\n"
    )


def test_provenance_of_a_record_with_only_its_run_id_and_node_times_of_no_runs():
    from metasyn.comparison.report import node_times, provenance_lines

    assert provenance_lines({"run_id": "r1", "git": {"commit": "abc", "dirty": False}}) == (
        "- **run**: `r1`, started None, environment `None`, pipelines `None`\n"
        "- **code**: commit `abc`\n"
        "- **machine**: None ; Python None\n"
        "- **packages**: "
    )
    empty = node_times([{"run_id": "r1"}])
    assert list(empty.columns) == ["node", "seconds", "run", "share"] and len(empty) == 0
    # A record without a start time sorts first, so a later run's time of the same node replaces it.
    times = node_times([{"run_id": "new", "started": "2026", "nodes": [{"name": "a", "seconds": 1.0}]},
                        {"run_id": "old", "nodes": [{"name": "a", "seconds": 3.0}]}])  # fmt: skip
    assert times.to_dict("records") == [{"node": "a", "seconds": 1.0, "run": "new", "share": 1.0}]


def test_a_q_or_p_value_equal_to_alpha_is_not_a_discovery():
    band_changes, shape_changes, layer_changes, rankings, model_shapes = _synergy(
        0.2, (0.1, 0.3), 0.1, (0.0, 0.2), 0.05
    )
    layer_changes.loc[layer_changes["q_value"] == 0.6, "q_value"] = 0.05
    text = _verdict(_calibration(0.1, (-0.25, -0.15)), (band_changes, shape_changes, layer_changes, rankings,
                                                         model_shapes))  # fmt: skip
    assert "permutation p = 0.050, peak-depth shift 0.300 [0.200, 0.400]: no change detected" in text
    assert "synergy in 1 of 4 layers (layers 2); redundancy in 0 of 4 layers." in text
    from metasyn.comparison.report import layer_change_summary

    summary = layer_change_summary(layer_changes, 0.05)
    assert summary["layers_q<0.05"].tolist() == [1, 0, 0, 0]


def test_without_replicates_or_ablated_models_the_verdict_has_no_seed_or_ablation_lines():
    text = _verdict(_calibration(0.1, (-0.25, -0.15)), _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)))
    assert "Between training seeds" not in text and "Ablation area" not in text
    assert text.split("\n\n")[-1].startswith("Inverted U (minus the quadratic coefficient")


def test_seed_spread_of_a_metric_no_seed_measured_has_no_range():
    from metasyn.comparison.report import seed_spread_sentence

    calibration = _calibration(0.1, (-0.25, -0.15))
    calibration = calibration[calibration["metric"] != "brier_minus_base"]
    sentence = seed_spread_sentence(calibration, ["metacog", "metacog_seed1"], "forced")
    assert sentence.endswith("; Brier change by seed:  (range n/a).")
    assert "debiased squared CE change by seed: metacog -0.200 [-0.250, -0.150] (n = 40) (range 0.000);" in sentence


def test_node_times_are_numbered_from_zero_longest_first():
    from metasyn.comparison.report import node_times

    times = node_times(
        [{"run_id": "r", "nodes": [{"name": "short", "seconds": 1.0}, {"name": "long", "seconds": 3.0}]}]
    )
    assert times["node"].tolist() == ["long", "short"] and times.index.tolist() == [0, 1]
    assert times["share"].tolist() == [0.75, 0.25]


@pytest.mark.parametrize(
    ("estimate", "interval", "references", "where"),
    [
        (-0.20, (-0.30, -0.10), [0.01, -0.02], "beyond"),  # planted: clears every control and 0
        (0.20, (0.10, 0.30), [0.05, -0.02], "beyond"),
        (-0.01, (-0.10, 0.08), [0.02, -0.03], "within"),  # null: like the controls
        (-0.10, (-0.15, -0.05), [-0.12, 0.00], "within"),  # excludes 0, but a control moved as far: fine-tuning
        (-0.05, (-0.12, 0.01), [0.00, -0.02], "inconclusive"),  # beyond in estimate, not in interval
        (-0.20, (np.nan, np.nan), [0.0], "undefined"),
        (-0.20, (-0.30, -0.10), [np.nan], "undefined"),
    ],
)
def test_a_change_is_beyond_the_controls_only_when_its_interval_clears_all_of_them(
    estimate, interval, references, where
):
    assert beyond_references(estimate, *interval, references) == where


def _calibration_with_controls(changes: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": model, "method": "forced", "domain": "all", "metric": f"{metric}_minus_base", "value": value,
             "ci_low": low, "ci_high": high, "n": 40, "note": ""}
            for model, (value, low, high) in changes.items()
            for metric in ("squared_ce_debiased", "auroc", "brier")
        ]
    )  # fmt: skip


def test_the_controls_sentence_reads_each_measure_against_every_control_and_seed():
    calibration = _calibration_with_controls(
        {"metacog": (-0.2, -0.25, -0.15), "metacog_seed1": (-0.22, -0.28, -0.16), "shuffled": (-0.01, -0.05, 0.03),
         "flipped": (0.02, -0.02, 0.06)}
    )  # fmt: skip
    band_changes = pd.DataFrame(
        [
            {"variant": variant, "reference": "base", "estimate": estimate, "ci_low": low, "ci_high": high}
            for variant, (estimate, low, high) in {
                "metacog": (0.03, -0.02, 0.08), "shuffled": (0.04, 0.0, 0.08), "flipped": (0.01, -0.03, 0.05)
            }.items()
        ]
    )  # fmt: skip
    shape_changes = pd.DataFrame(
        [{"comparison": "metacog vs base", "statistic": "peak_shift", "estimate": 0.3, "ci_low": 0.1, "ci_high": 0.5},
         {"comparison": "metacog vs shuffled", "statistic": "peak_shift", "estimate": 0.9, "ci_low": 0.8,
          "ci_high": 1.0}]
    )  # fmt: skip
    text = controls_sentence(
        "metacog", ["shuffled", "flipped"], ["metacog_seed1"], calibration, band_changes, shape_changes, "forced"
    )
    # The seed moved the calibration error as far as metacog did: a real fine-tuning effect, but not one beyond the seeds' spread.
    assert (
        "debiased squared CE change -0.200 [-0.250, -0.150] against shuffled -0.010, flipped 0.020, metacog_seed1 -0.220: within "
        "the spread of the controls and seeds" in text
    )
    assert "band contrast change 0.030 [-0.020, 0.080] against shuffled 0.040, flipped 0.010: within" in text
    # Only changes from base count: the metacog-vs-control row is not a control's change.
    assert "peak-depth shift 0.300 [0.100, 0.500] against none: undefined" in text
    without_seed = controls_sentence(
        "metacog", ["shuffled", "flipped"], [], calibration, band_changes, shape_changes, "forced"
    )
    assert (
        "debiased squared CE change -0.200 [-0.250, -0.150] against shuffled -0.010, flipped 0.020: beyond every control"
        in (without_seed)
    )
