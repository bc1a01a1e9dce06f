"""PhiID engine: phyid's reference numbers, lattice identities, degenerate inputs and argument checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("redundancy", REDUNDANCIES)
def test_degenerate_heads_give_nan_and_reasons_and_leave_the_rest_unchanged(redundancy: str) -> None:
    generated = _norm_like(np.random.default_rng(3), prompts=3, heads=6, steps=50)
    clean = generated[:, :5]
    constant = np.full((3, 1, 50), 4.2)
    non_finite = generated[:, 5:].copy()
    non_finite[0, 0, 7], non_finite[2, 0, -1] = np.nan, np.inf  # prompt 1 of this head stays valid
    affine_copy = 3.0 * clean[:, 2:3] - 1.0  # singular joint covariance with head 2
    series = np.concatenate([clean[:, :2], constant, clean[:, 2:4], non_finite, clean[:, 4:], affine_copy], axis=1)
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
