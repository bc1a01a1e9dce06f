"""PhiID engine: phyid's reference numbers, lattice identities, degenerate inputs and argument checks."""

from __future__ import annotations

import inspect
import itertools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from metasyn.synergy import phiid
from metasyn.synergy.phiid import ATOMS, phiid_all_pairs, phiid_pair

# Written by phyid (Imperial-MIND-lab/integrated-info-decomp @ f7fe791), copied from shared/phiid/ into the
# project's test data so the reference tests never skip; tests/data/phiid/README.md says what they hold.
REFERENCE = Path(__file__).resolve().parent / "data" / "phiid" / "reference_vectors.json"
TOL = 1e-12
REDUNDANCIES = ("MMI", "CCS")
# phyid's names for the intermediate terms -> this module's lattice knowns (past node, future node).
KNOWN_NAMES = {
    "I_xta": ("x", "x"), "I_xtb": ("x", "y"), "I_yta": ("y", "x"), "I_ytb": ("y", "y"),
    "I_xyta": ("s", "x"), "I_xytb": ("s", "y"), "I_xtab": ("x", "s"), "I_ytab": ("y", "s"), "I_xytab": ("s", "s"),
    "R_xyta": ("r", "x"), "R_xytb": ("r", "y"), "R_xytab": ("r", "s"),
    "R_abtx": ("x", "r"), "R_abty": ("y", "r"), "R_abtxy": ("s", "r"),
}  # fmt: skip
CASES = json.loads(REFERENCE.read_text())["cases"]
CASE_IDS = [case["name"] for case in CASES]


def _inputs(case: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(case["src"], dtype=np.float64), np.asarray(case["trg"], dtype=np.float64)


def _norm_like(rng: np.random.Generator, prompts: int, heads: int, steps: int) -> np.ndarray:
    """Positive, autocorrelated, cross-coupled series like attention-head output norms."""
    common = rng.standard_normal((prompts, 1, steps))
    noise = 0.6 * rng.standard_normal((prompts, heads, steps)) + 0.4 * common
    walk = np.cumsum(noise, axis=-1) * 0.15 + noise * 0.5
    return 2.0 + np.exp(0.4 * walk)


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_atoms_one_pair_and_all_pairs(case: dict, redundancy: str) -> None:
    src, trg = _inputs(case)
    expected = case["results"][redundancy]
    pair = phiid_pair(src, trg, tau=case["tau"], redundancy=redundancy)
    result = phiid_all_pairs(np.stack([src, trg]), tau=case["tau"], redundancy=redundancy, atoms=ATOMS)
    assert result.invalid_pairs.empty
    for atom in ATOMS:
        assert pair[atom] == pytest.approx(expected["atoms_mean"][atom], abs=TOL), atom
        assert result.atoms[atom].shape == (1, 2, 2)
        assert result.atoms[atom][0, 0, 1] == pytest.approx(expected["atoms_mean"][atom], abs=TOL), atom
        assert np.isnan(result.atoms[atom][0, 0, 0]) and np.isnan(result.atoms[atom][0, 1, 1])


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_lattice_identities(case: dict, redundancy: str) -> None:
    src, trg = _inputs(case)
    expected = case["results"][redundancy]
    tdmi = expected["intermediate_means"]["I"]["I_xytab"]
    assert abs(expected["check_sum_atoms_minus_TDMI"]) < TOL
    forward = phiid_pair(src, trg, tau=case["tau"], redundancy=redundancy)
    backward = phiid_pair(trg, src, tau=case["tau"], redundancy=redundancy)
    assert sum(forward.values()) == pytest.approx(tdmi, abs=TOL)
    assert sum(backward.values()) == pytest.approx(tdmi, abs=TOL)
    result = phiid_all_pairs(np.stack([src, trg]), tau=case["tau"], redundancy=redundancy, atoms=ATOMS)
    for atom in ("sts", "rtr"):
        assert backward[atom] == pytest.approx(expected["swapped_src_trg_sts_rtr"][atom], abs=TOL)
        assert backward[atom] == pytest.approx(forward[atom], abs=TOL)
        assert result.atoms[atom][0, 1, 0] == result.atoms[atom][0, 0, 1]
    for atom in ATOMS:  # [j, i] holds src=j, trg=i
        assert result.atoms[atom][0, 1, 0] == pytest.approx(backward[atom], abs=TOL), atom


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
@pytest.mark.parametrize("case", [c for c in CASES if "atoms_local" in c["results"]["MMI"]], ids=lambda c: c["name"])
def test_reference_local_atoms(case: dict, redundancy: str) -> None:
    src, trg = _inputs(case)
    local = phiid_pair(src, trg, tau=case["tau"], redundancy=redundancy, local=True)
    for atom in ATOMS:
        expected = np.asarray(case["results"][redundancy]["atoms_local"][atom])
        assert local[atom].shape == (case["n"] - case["tau"],)
        np.testing.assert_allclose(local[atom], expected, rtol=0, atol=TOL, err_msg=atom)


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_intermediate_means(case: dict, redundancy: str) -> None:
    """The lattice knowns behind phiid_all_pairs (closed form for MMI, local averages for CCS) match phyid's."""
    src, trg = _inputs(case)
    z_past, z_future, _ = phiid._standardise(torch.as_tensor(np.stack([src, trg]))[None], case["tau"])
    i, j = torch.tensor([0]), torch.tensor([1])
    rho = phiid._pair_correlations(*phiid._grams(z_past, z_future), i, j)
    dets = phiid._minor_dets(rho)
    if redundancy == "MMI":
        knowns = phiid._mean_knowns_mmi(dets)
    else:
        knowns = phiid._mean_knowns_ccs(rho, dets, z_past, z_future, i, j, local_chunk=1)
    expected = case["results"][redundancy]["intermediate_means"]
    for name, key in KNOWN_NAMES.items():
        group = "I" if name.startswith("I") else "R"
        assert float(knowns[key]) == pytest.approx(expected[group][name], abs=TOL), name
    assert float(knowns["r", "r"]) == pytest.approx(expected["rtr_double_redundancy"], abs=TOL)


@pytest.mark.parametrize("count", [4, 5])
def test_ccs_sign_agreement_follows_phyid(count: int) -> None:
    """phyid keeps a CCS term where all signs (np.sign, zero included) are equal; all-zero only keeps a zero."""
    combos = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=count)), dtype=torch.float64)
    kept = phiid._all_same_sign(list(combos.T))
    expected = [float(len(set(combo)) == 1 and combo[0] != 0) for combo in combos.tolist()]
    assert kept.tolist() == expected


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_all_pairs_match_one_pair_at_a_time(redundancy: str) -> None:
    series = _norm_like(np.random.default_rng(0), prompts=2, heads=4, steps=60)
    result = phiid_all_pairs(torch.as_tensor(series), redundancy=redundancy, atoms=ATOMS, pair_chunk=2)
    assert result.invalid_pairs.empty
    for prompt in range(2):
        for src in range(4):
            for trg in range(4):
                if src == trg:
                    assert all(np.isnan(result.atoms[atom][prompt, src, trg]) for atom in ATOMS)
                    continue
                pair = phiid_pair(series[prompt, src], series[prompt, trg], redundancy=redundancy)
                for atom in ATOMS:
                    assert result.atoms[atom][prompt, src, trg] == pytest.approx(pair[atom], abs=TOL)
                assert sum(result.atoms[atom][prompt, src, trg] for atom in ATOMS) == pytest.approx(
                    sum(pair.values()), abs=TOL
                )


def test_chunking_threads_and_layout_do_not_change_results() -> None:
    series = _norm_like(np.random.default_rng(1), prompts=3, heads=6, steps=40)
    reference = phiid_all_pairs(series, redundancy="CCS", atoms=("sts", "xty"))
    calls = []
    threads = torch.get_num_threads()
    chunked = phiid_all_pairs(
        series, redundancy="CCS", atoms=("sts", "xty"), pair_chunk=4, workers=1, progress=lambda *a: calls.append(a)
    )
    for atom in ("sts", "xty"):
        np.testing.assert_array_equal(chunked.atoms[atom], reference.atoms[atom])
    assert calls[-1][0] == calls[-1][1]
    assert torch.get_num_threads() == threads  # the call's single-threading is undone
    single = phiid_all_pairs(series[1], redundancy="CCS", atoms="sts")
    assert single.atoms["sts"].shape == (1, 6, 6)
    np.testing.assert_array_equal(single.atoms["sts"][0], reference.atoms["sts"][1])
    np.testing.assert_array_equal(reference.atoms["sts"], reference.atoms["sts"].transpose(0, 2, 1))
    assert not np.allclose(reference.atoms["xty"], reference.atoms["xty"].transpose(0, 2, 1), equal_nan=True)


def test_float32_is_close_to_float64() -> None:
    series = _norm_like(np.random.default_rng(2), prompts=2, heads=5, steps=80)
    exact = phiid_all_pairs(series).atoms
    single = phiid_all_pairs(series, dtype=torch.float32).atoms
    for atom in ("sts", "rtr"):
        assert single[atom].dtype == np.float64
        np.testing.assert_allclose(single[atom], exact[atom], atol=1e-4)


def _degenerate_series() -> tuple[np.ndarray, np.ndarray]:
    """3 prompts of 8 heads, 50 steps: a constant head (2), a non-finite one except in prompt 1 (5), an affine copy
    (7) of head 3, and the five clean heads alone."""
    generated = _norm_like(np.random.default_rng(3), prompts=3, heads=6, steps=50)
    clean = generated[:, :5]
    constant = np.full((3, 1, 50), 4.2)
    non_finite = generated[:, 5:].copy()
    non_finite[0, 0, 7], non_finite[2, 0, -1] = np.nan, np.inf  # prompt 1 of this head stays valid
    affine_copy = 3.0 * clean[:, 2:3] - 1.0  # singular joint covariance with head 2
    series = np.concatenate([clean[:, :2], constant, clean[:, 2:4], non_finite, clean[:, 4:], affine_copy], axis=1)
    return series, clean


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_degenerate_heads_give_nan_and_reasons_and_leave_the_rest_unchanged(redundancy: str) -> None:
    series, clean = _degenerate_series()
    kept = [0, 1, 3, 4, 6]  # positions of the clean heads in `series`
    bad_const, bad_nonfinite, bad_copy, copied = 2, 5, 7, 3

    expected = phiid_all_pairs(clean, redundancy=redundancy, atoms=("sts", "rtr", "xtx"))
    result = phiid_all_pairs(series, redundancy=redundancy, atoms=("sts", "rtr", "xtx"))

    for atom in ("sts", "rtr", "xtx"):
        values = result.atoms[atom]
        # Not bit for bit: BLAS picks kernels by matrix shape, so the same pairs in a smaller batch can round
        # differently in the last ulp (seen: 1e-16 relative on this CPU).
        np.testing.assert_allclose(values[:, kept][:, :, kept], expected.atoms[atom], rtol=1e-12, atol=1e-15)
        assert np.isnan(values[:, bad_const]).all() and np.isnan(values[:, :, bad_const]).all()
        assert np.isnan(values[[0, 2], bad_nonfinite]).all() and np.isnan(values[[0, 2], :, bad_nonfinite]).all()
        others = [h for h in range(8) if h != bad_nonfinite]
        assert not np.isnan(values[1, bad_nonfinite, [h for h in others if h != bad_const]]).any()
        assert np.isnan(values[:, bad_copy, copied]).all() and np.isnan(values[:, copied, bad_copy]).all()
        assert not np.isnan(values[:, bad_copy, [0, 1, 4, 6]]).any()

    rows = result.invalid_pairs
    assert list(rows.columns) == ["prompt", "source", "target", "reason"]
    assert (rows.source < rows.target).all()
    assert not rows.duplicated(["prompt", "source", "target"]).any()
    reasons = {(p, s, t): r for p, s, t, r in rows.itertuples(index=False)}
    expected_rows = {}
    for prompt in range(3):
        for other in range(8):
            if other != bad_const:
                expected_rows[(prompt, *sorted((bad_const, other)))] = "constant series"
        if prompt != 1:
            for other in range(8):
                if other != bad_nonfinite:
                    expected_rows[(prompt, *sorted((bad_nonfinite, other)))] = "non-finite values"
        expected_rows.setdefault((prompt, copied, bad_copy), "singular covariance")
    assert reasons == expected_rows


def test_series_too_short_gives_all_nan() -> None:
    result = phiid_all_pairs(np.random.default_rng(4).random((2, 3, 4)), tau=2)
    assert np.isnan(result.atoms["sts"]).all()
    assert len(result.invalid_pairs) == 2 * 3
    assert set(result.invalid_pairs.reason) == {"series too short"}
    assert phiid_all_pairs(np.random.default_rng(4).random((2, 1, 30))).invalid_pairs.empty


def test_one_pair_degenerate_inputs_warn_and_return_nan() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(40)
    for trg, reason in [
        (np.ones(40), "constant series"),
        (np.where(np.arange(40) == 3, np.nan, x), "non-finite values"),
        (2.0 * x + 1.0, "singular covariance"),
    ]:
        with pytest.warns(RuntimeWarning, match=reason):
            atoms = phiid_pair(x, trg, redundancy="CCS")
        assert set(atoms) == set(ATOMS) and all(math.isnan(v) for v in atoms.values())
    with pytest.warns(RuntimeWarning, match="series too short"):
        local = phiid_pair(x[:3], x[:3] ** 2, local=True)
    assert all(v.shape == (2,) and np.isnan(v).all() for v in local.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0}, "tau"),
        ({"tau": -1}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"tau": True}, "tau"),
        ({"redundancy": "mmi"}, "redundancy"),
        ({"redundancy": "Broja"}, "redundancy"),
        ({"atoms": ("sts", "syn")}, "atoms"),
        ({"atoms": ()}, "atoms"),
        ({"pair_chunk": 0}, "pair_chunk"),
        ({"workers": 0}, "workers"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    series = np.random.default_rng(6).random((2, 3, 20))
    with pytest.raises(ValueError, match=message):
        phiid_all_pairs(series, **kwargs)
    if set(kwargs) <= {"tau", "redundancy"}:
        with pytest.raises(ValueError, match=message):
            phiid_pair(series[0, 0], series[0, 1], **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="series must be"):
        phiid_all_pairs(np.zeros(10))
    with pytest.raises(ValueError, match="series must be"):
        phiid_all_pairs(np.zeros((1, 2, 3, 10)))
    with pytest.raises(ValueError, match="src and trg"):
        phiid_pair(np.zeros(10), np.zeros(11))
    with pytest.raises(ValueError, match="src and trg"):
        phiid_pair(np.zeros((2, 10)), np.zeros((2, 10)))


def test_the_project_copy_of_the_reference_vectors_matches_shared_when_shared_is_there():
    shared = Path(__file__).resolve().parents[2] / "shared" / "phiid" / "reference_vectors.json"
    if shared.is_file():
        assert json.loads(shared.read_text()) == json.loads(REFERENCE.read_text())
    assert len(CASES) >= 8


# ------------------------------------------------------------------------------ known answers at the edges


def test_redundancy_mmi_takes_per_pair_the_local_array_of_smaller_time_mean_the_second_on_ties() -> None:
    # (prompts, pairs, steps) = (2, 3, 4): local arrays with the given time means, differing step by step.
    wiggle = torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    means_1 = torch.tensor([[1.0, 2, 3], [2, 2, 0]], dtype=torch.float64)[..., None]
    means_2 = torch.tensor([[2.0, 2, 4], [1, 2, 1]], dtype=torch.float64)[..., None]
    mi_1, mi_2 = means_1 + wiggle, means_2 - 2 * wiggle
    chosen = phiid._redundancy_mmi(mi_1, mi_2)
    # mi_1 where its mean is the smaller; on a tie (prompt 0 pair 1, prompt 1 pair 1) mi_2, as phyid.
    first = torch.tensor([[True, False, True], [False, False, True]])[..., None]
    assert torch.equal(chosen, torch.where(first, mi_1, mi_2))


def test_double_redundancy_mmi_takes_per_pair_the_smallest_time_mean_the_first_on_ties() -> None:
    # Four candidates, (prompts, pairs, steps) = (2, 2, 3); the means are given per candidate below.
    def candidate(means: list[list[float]], wiggle: float) -> torch.Tensor:
        base = torch.tensor(means, dtype=torch.float64)[..., None]
        return base + torch.tensor([-wiggle, 0.0, wiggle], dtype=torch.float64)  # the mean is exactly `means`

    mis = [
        candidate([[3, 1], [2, 5]], 1.0),
        candidate([[2, 1], [2, 4]], 2.0),  # prompt 0 pair 1 ties the first at 1; prompt 1 pair 0 ties at 2
        candidate([[1, 4], [3, 4]], 3.0),  # prompt 1 pair 1 ties the second at 4
        candidate([[5, 5], [5, 0]], 4.0),
    ]
    chosen = phiid._double_redundancy_mmi(mis)
    expected = torch.stack(
        [
            torch.stack([mis[2][0, 0], mis[0][0, 1]]),  # smallest 1 (third); a tie at 1: the first
            torch.stack([mis[0][1, 0], mis[3][1, 1]]),  # a tie at 2: the first; smallest 0 (fourth)
        ]
    )
    assert torch.equal(chosen, expected)


def test_a_window_within_64_rounding_units_of_its_magnitude_is_constant() -> None:
    eps = float(np.finfo(np.float64).eps)
    # Magnitude 4: 64 units of it are 256 eps, exactly representable below 4 (the spacing there is 2 eps).
    at_limit = np.tile([4.0 - 256 * eps, 4.0], 4)
    past_limit = np.tile([4.0 - 260 * eps, 4.0], 4)  # 65 units
    _, _, code = phiid._standardise(torch.as_tensor(np.stack([at_limit, past_limit]))[None], 1)
    assert code.tolist() == [[phiid._CONSTANT, 0]]


def test_a_smooth_pair_near_but_not_at_collinearity_is_computed() -> None:
    """Thrice-integrated noise: the 4x4 correlation determinant (1.2e-10) is below the singular tolerance, but every
    variable keeps a residual variance above it given the others, which is what the check is about."""
    rng = np.random.default_rng(5)
    x, y = (np.cumsum(np.cumsum(np.cumsum(v))) for v in rng.standard_normal((2, 30)))
    rho = np.corrcoef([x[:-1], y[:-1], x[1:], y[1:]])
    assert np.linalg.det(rho) < phiid._SINGULAR_TOL_F64
    residual = [np.linalg.det(rho) / np.linalg.det(np.delete(np.delete(rho, k, 0), k, 1)) for k in range(4)]
    assert min(residual) > 1e3 * phiid._SINGULAR_TOL_F64
    for redundancy in REDUNDANCIES:
        atoms = phiid_pair(x, y, redundancy=redundancy)
        assert sum(atoms.values()) == pytest.approx(_time_delayed_mutual_information(x, y, 1), rel=1e-5)
        result = phiid_all_pairs(np.stack([x, y]), redundancy=redundancy, atoms=ATOMS)
        assert result.invalid_pairs.empty
        # Rounding is amplified by the condition of the matrix (about 1e10): agreement to 1e-5, not 1e-12.
        total = sum(result.atoms[atom][0, 0, 1] for atom in ATOMS)
        assert total == pytest.approx(_time_delayed_mutual_information(x, y, 1), rel=1e-5)


def test_three_samples_are_enough_to_be_tried_and_two_are_too_short() -> None:
    """MIN_SAMPLES = 3 time points: three are tried (and are singular: three centred samples span two dimensions,
    the pair has four variables); two are "series too short"."""
    series = np.random.default_rng(7).standard_normal((2, 4))
    for steps, reason in [(4, "singular covariance"), (3, "series too short")]:
        rows = phiid_all_pairs(series[:, :steps]).invalid_pairs
        assert rows.reason.tolist() == [reason]
        with pytest.warns(RuntimeWarning, match=reason):
            atoms = phiid_pair(series[0, :steps], series[1, :steps])
        assert all(math.isnan(value) for value in atoms.values())


def test_local_atoms_of_a_series_no_longer_than_tau_are_empty() -> None:
    for n, tau in [(2, 2), (2, 3)]:
        with pytest.warns(RuntimeWarning, match="series too short"):
            local = phiid_pair(np.arange(n, dtype=float), np.ones(n), tau=tau, local=True)
        assert all(value.shape == (0,) for value in local.values())


def test_one_head_gives_nan_atoms_of_the_full_shape_and_no_pairs() -> None:
    result = phiid_all_pairs(np.random.default_rng(4).random((2, 1, 30)), atoms=("sts", "xty"))
    assert result.invalid_pairs.empty
    assert set(result.atoms) == {"sts", "xty"}
    assert all(value.shape == (2, 1, 1) and np.isnan(value).all() for value in result.atoms.values())


def test_python_lists_are_computed_in_double_precision() -> None:
    case = CASES[0]
    expected = case["results"]["MMI"]["atoms_mean"]
    atoms = phiid_pair(list(case["src"]), list(case["trg"]), tau=case["tau"])
    for atom in ATOMS:
        assert atoms[atom] == pytest.approx(expected[atom], abs=TOL), atom


def test_float32_is_the_precision_of_the_computation_not_only_of_the_input() -> None:
    series = _norm_like(np.random.default_rng(2), prompts=2, heads=5, steps=80)
    exact = phiid_all_pairs(series).atoms["sts"]
    single = phiid_all_pairs(series, dtype=torch.float32).atoms["sts"]
    from_single = phiid_all_pairs(torch.as_tensor(series, dtype=torch.float32), dtype=torch.float32).atoms["sts"]
    np.testing.assert_array_equal(single, from_single)  # float64 input cast to float32 first
    assert np.nanmax(np.abs(single - exact)) > 1e-10  # and not computed in double precision after all


def test_exact_argument_messages() -> None:
    series = np.random.default_rng(6).random((2, 3, 20))
    for option, value in [("pair_chunk", 0), ("workers", -2), ("pair_chunk", True), ("workers", 1.5)]:
        message = f"^{option} must be a positive integer or None, got {value!r}\\.$"
        with pytest.raises(ValueError, match=message):
            phiid_all_pairs(series, **{option: value})
    with pytest.raises(
        ValueError, match=r"^src and trg must be 1-D of equal length, got shapes \(10,\) and \(11,\)\.$"
    ):
        phiid_pair(np.zeros(10), np.zeros(11))


def test_the_warning_of_an_undefined_pair_names_the_caller() -> None:
    with pytest.warns(RuntimeWarning, match="constant series") as record:
        phiid_pair(np.arange(10.0), np.ones(10))
    assert record[0].filename != phiid.__file__
    # mutmut calls each function through a trampoline (two more frames); without it, the caller is this file.
    if not hasattr(phiid.phiid_pair, "__wrapped__"):
        assert record[0].filename == __file__


def _sorted_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["prompt", "source", "target"]).reset_index(drop=True)


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_memory_bounds_split_the_prompts_into_groups_and_change_no_result(redundancy: str, monkeypatch) -> None:
    """Prompt groups fit _GRAM_BYTES (three heads x heads Gram matrices a prompt) and _CHUNK_VALUES (pairs x
    prompts per working array); the groups are reported to ``progress`` and the numbers are those of one group."""
    series, _ = _degenerate_series()  # 3 prompts, 8 heads (28 pairs), 50 steps, bad pairs in every prompt
    names = ("sts", "xty")
    reference = phiid_all_pairs(series, redundancy=redundancy, atoms=names)
    grams = 3 * 8 * 8 * 8  # bytes of one prompt's Gram matrices in float64
    values = dict(phiid._CHUNK_VALUES)
    for gram_bytes, cpu_values, pair_chunk, groups in [
        (2 * grams, values["cpu"], None, 2),  # two prompts' Grams: groups of 2, 1
        (grams, values["cpu"], None, 3),  # one prompt at a time
        (values["cpu"] * grams, 8, 4, 2),  # 8 values of 4 pairs: 2 prompts; CCS then walks one pair at a time
    ]:
        monkeypatch.setattr(phiid, "_GRAM_BYTES", gram_bytes)
        monkeypatch.setattr(phiid, "_CHUNK_VALUES", {**values, "cpu": cpu_values})
        calls = []  # (done, total, torch's intra-op threads) at each report
        progress = lambda done, total, calls=calls: calls.append((done, total, torch.get_num_threads()))  # noqa: E731
        result = phiid_all_pairs(series, redundancy=redundancy, atoms=names, pair_chunk=pair_chunk, progress=progress)
        # One report per group, and torch's intra-op threads are off (1) during the call.
        assert calls == [(k, groups, 1) for k in range(1, groups + 1)]
        for name in names:
            np.testing.assert_allclose(result.atoms[name], reference.atoms[name], rtol=1e-12, atol=1e-15)
        # The rows come chunk by chunk, so their order changes with the chunks; their content does not.
        pd.testing.assert_frame_equal(_sorted_rows(result.invalid_pairs), _sorted_rows(reference.invalid_pairs))


def test_cpu_groups_run_in_the_requested_number_of_single_threaded_workers(monkeypatch) -> None:
    created = []

    class Recording(ThreadPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            created.append(inspect.signature(ThreadPoolExecutor).bind(*args, **kwargs).arguments)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(phiid, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(phiid, "_GRAM_BYTES", 3 * 4 * 4 * 8)  # one prompt per group: 3 groups
    series = _norm_like(np.random.default_rng(8), prompts=3, heads=4, steps=20)
    for workers, expected in [(2, 2), (5, 3), (None, min(torch.get_num_threads(), 3))]:
        phiid_all_pairs(series, workers=workers)
        assert created.pop() == {"max_workers": expected, "initializer": torch.set_num_threads, "initargs": (1,)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_a_cuda_device_gives_the_cpu_numbers(redundancy: str) -> None:
    series, _ = _degenerate_series()
    cpu = phiid_all_pairs(series, redundancy=redundancy, atoms=ATOMS, device="cpu")
    for run in (
        phiid_all_pairs(series, redundancy=redundancy, atoms=ATOMS),  # a NumPy input goes to CUDA by default
        phiid_all_pairs(torch.as_tensor(series, device="cuda"), redundancy=redundancy, atoms=ATOMS),
    ):
        for atom in ATOMS:
            np.testing.assert_allclose(run.atoms[atom], cpu.atoms[atom], rtol=1e-9, atol=1e-12)
        pd.testing.assert_frame_equal(_sorted_rows(run.invalid_pairs), _sorted_rows(cpu.invalid_pairs))


# ------------------------------------------------------------------------------ properties (hypothesis)

hypothesis = pytest.importorskip("hypothesis")  # a dev extra (pyproject.toml)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _coupled_pair(seed: int, steps: int, coupling: float) -> tuple[np.ndarray, np.ndarray]:
    """Two AR(1) series, the second driven by the first's past."""
    rng = np.random.default_rng(seed)
    x, y = np.zeros(steps), np.zeros(steps)
    noise = rng.standard_normal((2, steps))
    for t in range(1, steps):
        x[t] = 0.5 * x[t - 1] + noise[0, t]
        y[t] = 0.3 * y[t - 1] + coupling * x[t - 1] + noise[1, t]
    return x, y


def _time_delayed_mutual_information(x: np.ndarray, y: np.ndarray, tau: int) -> float:
    """I(x_t, y_t; x_t+tau, y_t+tau) of Gaussians from the sample correlations (nats), computed here apart."""
    rho = np.corrcoef([x[:-tau], y[:-tau], x[tau:], y[tau:]])
    return 0.5 * math.log(np.linalg.det(rho[:2, :2]) * np.linalg.det(rho[2:, 2:]) / np.linalg.det(rho))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(30, 120), st.floats(-0.9, 0.9), st.sampled_from([1, 2]))
@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_atoms_sum_to_the_time_delayed_mutual_information_and_sts_rtr_are_symmetric(
    redundancy: str, seed: int, steps: int, coupling: float, tau: int
) -> None:
    x, y = _coupled_pair(seed, steps, coupling)
    forward = phiid_pair(x, y, tau=tau, redundancy=redundancy)
    backward = phiid_pair(y, x, tau=tau, redundancy=redundancy)
    tdmi = _time_delayed_mutual_information(x, y, tau)
    assert sum(forward.values()) == pytest.approx(tdmi, abs=1e-9)
    assert sum(backward.values()) == pytest.approx(tdmi, abs=1e-9)
    assert backward["sts"] == pytest.approx(forward["sts"], abs=1e-9)
    assert backward["rtr"] == pytest.approx(forward["rtr"], abs=1e-9)
