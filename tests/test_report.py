"""The verdict is computed from the numbers: opposite inputs give opposite verdicts."""

import pandas as pd

from metasyn.comparison.report import render_report, verdict


def _calibration(ece_after: float, ece_change_ci: tuple[float, float]) -> pd.DataFrame:
    rows = [
        ("base", "ece", 0.30, 0.25, 0.35),
        ("metacog", "ece", ece_after, ece_after - 0.05, ece_after + 0.05),
        ("metacog", "ece_minus_base", ece_after - 0.30, *ece_change_ci),
        ("base", "auroc", 0.55, 0.5, 0.6),
        ("metacog", "auroc", 0.55, 0.5, 0.6),
        ("metacog", "auroc_minus_base", 0.0, -0.05, 0.05),
    ]
    return pd.DataFrame(
        [
            {"model": m, "domain": "all", "metric": k, "value": v, "ci_low": lo, "ci_high": hi, "n": 40, "note": ""}
            for m, k, v, lo, hi in rows
        ]
    )


def _synergy(estimate: float, ci: tuple[float, float], versus: float, versus_ci: tuple[float, float]):
    changes = pd.DataFrame(
        [
            {
                "contrast": "metacog - base",
                "variant": "metacog",
                "reference": "base",
                "estimate": estimate,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "n_prompts": 12,
                "n_resamples": 100,
            },
            {
                "contrast": "(metacog - base) - (control_shuffled - base)",
                "variant": "metacog",
                "reference": "control_shuffled",
                "estimate": versus,
                "ci_low": versus_ci[0],
                "ci_high": versus_ci[1],
                "n_prompts": 12,
                "n_resamples": 100,
            },
        ]
    )
    tests = pd.DataFrame(
        [{"variant": "metacog", "quantity": "syn_red_score", "t_p": 0.01, "wilcoxon_p": 0.02, "cohens_d": 0.8}]
    )
    return changes, tests


def test_opposite_inputs_give_opposite_verdicts():
    improved = verdict(
        _calibration(0.10, (-0.25, -0.15)), *_synergy(0.2, (0.1, 0.3), 0.15, (0.05, 0.25)), ["metacog"], "Mid-layer"
    )
    worsened = verdict(
        _calibration(0.50, (0.15, 0.25)), *_synergy(-0.2, (-0.3, -0.1), -0.15, (-0.25, -0.05)), ["metacog"], "Mid-layer"
    )
    assert "ECE fell from 0.300 to 0.100" in improved and "an improvement" in improved
    assert "ECE rose from 0.300 to 0.500" in worsened and "an improvement" not in worsened
    assert "changed by 0.200 [0.100, 0.300]" in improved and "changed by -0.200" in worsened
    assert "larger than the effect of fine-tuning" in improved
    assert "smaller than the effect of fine-tuning" in worsened


def test_intervals_spanning_zero_are_called_indistinguishable():
    text = verdict(
        _calibration(0.28, (-0.1, 0.05)), *_synergy(0.01, (-0.1, 0.1), 0.0, (-0.1, 0.1)), ["metacog"], "Mid-layer"
    )
    assert "not distinguishable from no change" in text
    assert "no different from the effect of fine-tuning" in text


def test_report_contains_verdict_tables_and_figure_links():
    calibration = _calibration(0.1, (-0.25, -0.15))
    changes, tests = _synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2))
    models = pd.DataFrame(
        {"name_or_path": ["/cache/gemma-3-4b-it"], "architecture": ["Gemma3ForConditionalGeneration"]}, index=["base"]
    )
    text = render_report(
        {"fine-tuned variants": "metacog"},
        models,
        "VERDICT",
        calibration,
        changes,
        tests,
        pd.DataFrame({"variant": ["metacog"], "spearman_rho": [0.9]}),
        pd.DataFrame({"comparison": ["metacog vs base"], "statistic": ["peak_shift"], "estimate": [0.25]}),
        pd.DataFrame({"model": ["random_init"], "statistic": ["inverted_u_quadratic"], "estimate": [0.01]}),
        {"Layer profiles": "layer_profiles.png"},
    )
    assert "## Verdict\n\nVERDICT" in text
    assert "| base | /cache/gemma-3-4b-it | Gemma3ForConditionalGeneration |" in text
    assert "| metacog vs base | peak_shift | 0.250 |" in text
    assert "| random_init | inverted_u_quadratic | 0.010 |" in text
    assert "![Layer profiles](layer_profiles.png)" in text
    assert "| metric | base | metacog |" in text


def test_a_base_model_that_states_no_confidence_is_reported_not_hidden():
    calibration = _calibration(0.10, (-0.25, -0.15))
    base_ece = (calibration["model"] == "base") & (calibration["metric"] == "ece")
    calibration.loc[base_ece, "value"] = float("nan")
    calibration = pd.concat(
        [
            calibration,
            pd.DataFrame(
                [
                    {
                        "model": "base",
                        "domain": "all",
                        "metric": "parse_rate",
                        "value": 0.0,
                        "ci_low": 0.0,
                        "ci_high": 0.0,
                        "n": 40,
                        "note": "",
                    },
                    {
                        "model": "metacog",
                        "domain": "all",
                        "metric": "parse_rate",
                        "value": 0.7,
                        "ci_low": 0.6,
                        "ci_high": 0.8,
                        "n": 40,
                        "note": "",
                    },
                ]
            ),
        ]
    )
    text = verdict(calibration, *_synergy(0.2, (0.1, 0.3), 0.1, (0.0, 0.2)), ["metacog"], "Mid-layer")
    assert "ECE change undefined: parse rate of stated confidence is 0.000 for base and 0.700 for metacog" in text
    assert "(metacog ECE = 0.100)" in text
