"""Gaussian Integrated Information Decomposition (PhiID) of pairs of time series, one pair or all pairs at once.

Reproduces ``phyid`` (Imperial-MIND-lab/integrated-info-decomp) ``calc_PhiID(src, trg, tau, kind="gaussian",
redundancy="MMI" | "CCS")``: the past ``(src_t, trg_t)`` and future ``(src_{t+tau}, trg_{t+tau})`` rows are each
scaled to unit standard deviation (ddof=1), Gaussian local entropies come from the sample covariance (ddof=1), in
nats, and the 16 atoms follow from nine mutual informations and the redundancies by inverting the PhiID lattice.

Unlike phyid, degenerate inputs (a constant or non-finite series, an affine copy, a series too short) give NaN
atoms with a reason instead of an exception, and ``phiid_all_pairs`` evaluates every head pair of every prompt in
vectorised, memory-bounded chunks (torch, so it also runs on a GPU):

- all pair covariances come from three Gram matrices per prompt (past-past, future-future, past-future);
- MMI time-means are closed form: the mean of a Gaussian local mutual information over the samples that
  estimated the covariance is exactly the log-determinant mutual information, and MMI keeps whole local arrays,
  so the redundancies' means are minima of means and no per-time-step work is needed;
- CCS needs the signs of local values, so it evaluates each local mutual information as a quadratic form in the
  z-scored samples, with coefficients taken from closed-form inverses of the (at most 4x4) correlation matrices;
- on a CPU, prompt groups run in parallel worker threads, with torch's intra-op threads set to 1 for the duration
  of the call (``torch.set_num_threads`` is process-wide, so it is restored afterwards).

``phiid_all_pairs`` options: ``pair_chunk``, head pairs per block (default: sized for the CPU cache, or large on a
GPU); ``device`` (default: the input tensor's, else CUDA when available, else CPU); ``dtype`` of the computation
(results are float64 arrays either way); ``progress(done, total)``, called per finished prompt group; ``workers``,
CPU threads (default ``torch.get_num_threads()``). Non-symmetric atoms are returned for both orders, [i, j] with
src=i and [j, i] with src=j; the diagonal is NaN. A pair's numbers depend only on its own two series (a bad head is
zeroed before the shared Gram products), so a degenerate head leaves every other entry as it would be without it.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import combinations, combinations_with_replacement

import numpy as np
import pandas as pd
import torch

ATOMS: tuple[str, ...] = (
    "rtr", "rtx", "rty", "rts",
    "xtr", "xtx", "xty", "xts",
    "ytr", "ytx", "yty", "yts",
    "str", "stx", "sty", "sts",
)  # fmt: skip
REDUNDANCIES: tuple[str, ...] = ("MMI", "CCS")
# The fewest time points (steps - tau) a pair's series needs; shorter series are reported as "series too short".
MIN_SAMPLES = 3
INVALID_REASONS: tuple[str, ...] = (
    "singular covariance",
    "constant series",
    "non-finite values",
    "series too short",
)

# Variables of one pair: 0 = src past, 1 = trg past, 2 = src future, 3 = trg future. The lattice nodes are
# r = redundancy {1}{2}, x = {1} (src), y = {2} (trg), s = synergy {12}; atom "atb" flows from past node a to
# future node b. Known (a, b) with a, b in "xys" is I(past variables of a; future variables of b); known (r, b),
# (a, r) and (r, r) are the redundancies, and each known is the sum of the atoms below it in the product lattice.
_PAST = {"x": (0,), "y": (1,), "s": (0, 1)}
_FUTURE = {"x": (2,), "y": (3,), "s": (2, 3)}
# Knowns that are mutual informations, and the monomials z_p z_q of each one's local quadratic form.
_MI_KEYS = tuple((a, b) for a in "xys" for b in "xys")
_MI_TERMS = tuple(
    (key, pq) for key in _MI_KEYS for pq in combinations_with_replacement(_PAST[key[0]] + _FUTURE[key[1]], 2)
)
# Mobius function of the two-source (diamond) lattice, _MOBIUS[upper][lower]; it inverts the sums above.
_MOBIUS = {
    "r": {"r": 1},
    "x": {"x": 1, "r": -1},
    "y": {"y": 1, "r": -1},
    "s": {"s": 1, "x": -1, "y": -1, "r": 1},
}
# Exchanging src and trg relabels x <-> y on both sides of every atom.
_SWAP_SRC_TRG = str.maketrans("xy", "yx")

# phyid's CCS double co-information, as (coefficient, known) in its summation order: -Ixta - Ixtb - Iyta - Iytb
# + Ixtab + Iytab + Ixyta + Ixytb - Ixytab + Rxyta + Rxytb - Rxytab + Rabtx + Rabty - Rabtxy.
_DOUBLE_COINFO = (
    (-1, ("x", "x")), (-1, ("x", "y")), (-1, ("y", "x")), (-1, ("y", "y")),
    (1, ("x", "s")), (1, ("y", "s")), (1, ("s", "x")), (1, ("s", "y")), (-1, ("s", "s")),
    (1, ("r", "x")), (1, ("r", "y")), (-1, ("r", "s")),
    (1, ("x", "r")), (1, ("y", "r")), (-1, ("s", "r")),
)  # fmt: skip

_TOO_SHORT, _NON_FINITE, _CONSTANT, _SINGULAR = (
    4,
    3,
    2,
    1,
)  # codes; INVALID_REASONS[code - 1], larger wins
# Relative eigenvalue cutoff of scipy's multivariate_normal (1e6 * eps), where phyid raises on a singular covariance.
_SINGULAR_TOL_F64 = 1e6 * np.finfo(np.float64).eps
# Values per working array in a chunk: a few MB stays in CPU cache; a GPU wants large launches.
_CHUNK_VALUES = {"cpu": 1 << 14, "cuda": 1 << 24}
_GRAM_BYTES = 1 << 28  # per prompt group: three (heads x heads) Gram matrices


@dataclass
class PhiIDResult:
    """Time-mean PhiID atoms for every ordered head pair, and the pairs that could not be computed."""

    atoms: dict[str, np.ndarray]  # atom -> (prompts, heads, heads) float64; [p, i, j] has src=i, trg=j
    invalid_pairs: pd.DataFrame  # prompt, source, target, reason; one row per degenerate unordered pair


def phiid_pair(
    src: np.ndarray | torch.Tensor | Sequence[float],
    trg: np.ndarray | torch.Tensor | Sequence[float],
    tau: int = 1,
    redundancy: str = "MMI",
    local: bool = False,
) -> dict[str, float | np.ndarray]:
    """PhiID atoms of one pair like phyid's calc_PhiID: time means, or local arrays of length n - tau."""
    tau = _check_tau(tau)
    _check_redundancy(redundancy)
    src_t = torch.as_tensor(src, dtype=torch.float64).detach().cpu()
    trg_t = torch.as_tensor(trg, dtype=torch.float64).detach().cpu()
    if src_t.ndim != 1 or src_t.shape != trg_t.shape:
        shapes = f"{tuple(src_t.shape)} and {tuple(trg_t.shape)}"
        raise ValueError(f"src and trg must be 1-D of equal length, got shapes {shapes}.")
    steps = max(src_t.shape[0] - tau, 0)
    code = _TOO_SHORT
    if steps >= 3:
        z_past, z_future, head_code = _standardise(torch.stack([src_t, trg_t])[None], tau)
        src_i, trg_i = torch.tensor([0]), torch.tensor([1])
        rho = _pair_correlations(*_grams(z_past, z_future), src_i, trg_i)
        dets = _minor_dets(rho)
        code = max(
            int(head_code.max()),
            _SINGULAR * int(~_nonsingular(dets, _SINGULAR_TOL_F64)),
        )
    if code:
        reason = INVALID_REASONS[code - 1]
        warnings.warn(
            f"PhiID of this pair is undefined ({reason}); atoms are NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        return {atom: np.full(steps, np.nan) if local else math.nan for atom in ATOMS}
    z = [z_past[:, src_i], z_past[:, trg_i], z_future[:, src_i], z_future[:, trg_i]]
    atoms = _atoms_from_knowns(_local_knowns(_local_mis(*_mi_forms(rho, dets), z), redundancy), ATOMS)
    if local:
        return {atom: value[0, 0].numpy().copy() for atom, value in atoms.items()}
    return {atom: float(value[0, 0].mean()) for atom, value in atoms.items()}


def phiid_all_pairs(
    series: np.ndarray | torch.Tensor,
    tau: int = 1,
    redundancy: str = "MMI",
    atoms: Sequence[str] = ("sts", "rtr"),
    pair_chunk: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> PhiIDResult:
    """Time-mean PhiID atoms of every head pair of every prompt; series is (prompts, heads, time) or (heads, time)."""
    tau = _check_tau(tau)
    _check_redundancy(redundancy)
    names = (atoms,) if isinstance(atoms, str) else tuple(atoms)
    if not names or any(name not in ATOMS for name in names):
        raise ValueError(f"atoms must be a non-empty selection of {ATOMS}, got {names!r}.")
    for option, value in (("pair_chunk", pair_chunk), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{option} must be a positive integer or None, got {value!r}.")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}.")
    if device is None:
        device = series.device if isinstance(series, torch.Tensor) else "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.as_tensor(series, dtype=dtype, device=device).detach()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"series must be (prompts, heads, time) or (heads, time), got shape {tuple(x.shape)}.")
    n_prompts, n_heads, n_time = x.shape
    out = {name: np.full((n_prompts, n_heads, n_heads), np.nan) for name in names}
    src_idx, trg_idx = torch.triu_indices(n_heads, n_heads, offset=1, device=x.device)
    n_pairs = src_idx.numel()
    steps = n_time - tau
    if n_pairs == 0:
        return PhiIDResult(out, _invalid_frame([]))
    if steps < MIN_SAMPLES:
        prompt, pair = np.divmod(np.arange(n_prompts * n_pairs), n_pairs)
        rows = (
            prompt,
            src_idx.cpu().numpy()[pair],
            trg_idx.cpu().numpy()[pair],
            np.full(prompt.size, _TOO_SHORT),
        )
        return PhiIDResult(out, _invalid_frame([rows]))

    on_gpu = x.device.type == "cuda"
    target = _CHUNK_VALUES["cuda" if on_gpu else "cpu"]
    chunk = min(n_pairs, pair_chunk or target)
    group_by_gram = _GRAM_BYTES // (3 * n_heads * n_heads * x.element_size())
    group = max(1, min(n_prompts, target // chunk, group_by_gram))
    # CCS works per time step: each pair then spans `steps` values, so it walks a chunk in cache-sized slices.
    local_chunk = max(1, target // (group * steps))
    tol = max(_SINGULAR_TOL_F64, 1e3 * torch.finfo(dtype).eps)
    # A non-symmetric atom's [j, i] entry (src=j, trg=i) is its x<->y relabelled twin evaluated with src=i, trg=j.
    twins = {name: name.translate(_SWAP_SRC_TRG) for name in names}
    needed = tuple(dict.fromkeys([*twins, *twins.values()]))
    z_past, z_future, head_code = _standardise(x, tau)

    def run_group(p0: int) -> list[tuple[np.ndarray, ...]]:
        """Fill one group of prompts in ``out``; return its invalid-pair rows."""
        prompts = slice(p0, p0 + group)
        zp, zf, codes = z_past[prompts], z_future[prompts], head_code[prompts]
        grams = _grams(zp, zf)
        rows = []
        for c0 in range(0, n_pairs, chunk):
            i, j = src_idx[c0 : c0 + chunk], trg_idx[c0 : c0 + chunk]
            rho = _pair_correlations(*grams, i, j)
            dets = _minor_dets(rho)
            if redundancy == "MMI":
                knowns = _mean_knowns_mmi(dets)
            else:
                knowns = _mean_knowns_ccs(rho, dets, zp, zf, i, j, local_chunk)
            values = _atoms_from_knowns(knowns, needed)
            singular = (~_nonsingular(dets, tol)).to(torch.int8)
            code = torch.maximum(torch.maximum(codes[:, i], codes[:, j]), singular)
            bad = code > 0
            i_np, j_np = i.cpu().numpy(), j.cpu().numpy()
            for name, twin in twins.items():
                out[name][prompts, i_np, j_np] = values[name].masked_fill(bad, math.nan).cpu().numpy()
                out[name][prompts, j_np, i_np] = values[twin].masked_fill(bad, math.nan).cpu().numpy()
            prompt_bad, pair_bad = bad.nonzero(as_tuple=True)
            if prompt_bad.numel():
                found = (
                    prompt_bad + p0,
                    i[pair_bad],
                    j[pair_bad],
                    code[prompt_bad, pair_bad],
                )
                rows.append(tuple(value.cpu().numpy() for value in found))
        return rows

    starts = range(0, n_prompts, group)
    invalid_rows = []
    with ExitStack() as stack:
        if on_gpu:
            results = map(run_group, starts)
        else:
            # Prompt groups are independent: worker threads run them on separate cores (torch releases the GIL),
            # each single-threaded. torch's intra-op threads are off meanwhile, in every thread (OpenMP keeps the
            # setting per thread): on these cache-sized arrays they cost more than they give, and they stall badly
            # when other processes hold the cores.
            n_workers = min(workers or torch.get_num_threads(), len(starts))
            stack.enter_context(_intra_op_threads(1))
            pool = stack.enter_context(ThreadPoolExecutor(n_workers, initializer=torch.set_num_threads, initargs=(1,)))
            results = pool.map(run_group, starts)
        for done, rows in enumerate(results, start=1):
            invalid_rows.extend(rows)
            if progress is not None:
                progress(done, len(starts))
    return PhiIDResult(out, _invalid_frame(invalid_rows))


@contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """Set torch's (process-wide) intra-op thread count for the duration, then restore it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_tau(tau: int) -> int:
    if isinstance(tau, bool):
        raise ValueError(f"tau must be a positive integer, got {tau!r}.")
    try:
        tau = operator.index(tau)
    except TypeError:
        raise ValueError(f"tau must be a positive integer, got {tau!r}.") from None
    if tau < 1:
        raise ValueError(f"tau must be a positive integer, got {tau}.")
    return tau


def _check_redundancy(redundancy: str) -> None:
    if redundancy not in REDUNDANCIES:
        raise ValueError(f"redundancy must be one of {REDUNDANCIES}, got {redundancy!r}.")


def _standardise(x: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Past and future windows scaled and centred as phyid does, invalid heads zeroed, and per-head codes."""
    steps = x.shape[-1] - tau
    code = torch.zeros(x.shape[:-1], dtype=torch.int8, device=x.device)
    # A window whose spread is within a few dozen rounding units of its magnitude holds nothing but rounding noise.
    constant_rtol = 64 * torch.finfo(x.dtype).eps
    windows = []
    for window in (x[..., :steps], x[..., tau:]):
        spread = window.amax(-1) - window.amin(-1)
        code = torch.maximum(
            code,
            (spread <= constant_rtol * window.abs().amax(-1)).to(torch.int8) * _CONSTANT,
        )
        scaled = window / window.std(-1, correction=1, keepdim=True)
        windows.append(scaled - scaled.mean(-1, keepdim=True))
    code = torch.where(torch.isfinite(x).all(-1), code, _NON_FINITE)
    # Zeroed rows keep NaN and inf out of the Gram products, so other pairs never see a bad head.
    valid = (code == 0)[..., None]
    return windows[0].where(valid, 0.0), windows[1].where(valid, 0.0), code


def _grams(z_past: torch.Tensor, z_future: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample correlations past-past, future-future and past-future between all heads of each prompt."""
    scale = 1.0 / (z_past.shape[-1] - 1)
    return (
        (z_past @ z_past.mT) * scale,
        (z_future @ z_future.mT) * scale,
        (z_past @ z_future.mT) * scale,
    )


def _pair_correlations(
    gpp: torch.Tensor,
    gff: torch.Tensor,
    gpf: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
) -> dict[tuple[int, int], torch.Tensor]:
    """Off-diagonal entries of each pair's 4x4 correlation matrix, (prompts, pairs) per entry.

    The diagonal is taken as 1: z-scored rows have unit sample variance up to rounding.
    """
    auto, n = gpf.diagonal(dim1=-2, dim2=-1), gpf.shape[-1]
    return {
        (0, 1): gpp.flatten(1).index_select(1, i * n + j),
        (2, 3): gff.flatten(1).index_select(1, i * n + j),
        (0, 2): auto.index_select(1, i),
        (1, 3): auto.index_select(1, j),
        (0, 3): gpf.flatten(1).index_select(1, i * n + j),
        (1, 2): gpf.flatten(1).index_select(1, j * n + i),
    }


def _adjugate(rho: dict[tuple[int, int], torch.Tensor], subset: tuple[int, ...], a: int, b: int) -> torch.Tensor:
    """Off-diagonal entry (a, b) of the adjugate of a unit-diagonal correlation matrix of up to 4 variables."""
    r = lambda p, q: rho[(p, q) if p < q else (q, p)]  # noqa: E731
    rest = [k for k in subset if k not in (a, b)]
    if not rest:
        return -r(a, b)
    if len(rest) == 1:
        (k,) = rest
        return r(a, k) * r(b, k) - r(a, b)
    k, l = rest
    return (
        r(a, k) * r(b, k)
        + r(a, l) * r(b, l)
        - r(a, b) * (1 - r(k, l) ** 2)
        - r(k, l) * (r(a, k) * r(b, l) + r(a, l) * r(b, k))
    )


def _minor_dets(
    rho: dict[tuple[int, int], torch.Tensor],
) -> dict[tuple[int, ...], torch.Tensor | float]:
    """Determinants of all principal minors of each pair's correlation matrix, keyed by sorted variable tuples."""
    dets: dict[tuple[int, ...], torch.Tensor | float] = {
        (): 1.0,
        **{(k,): 1.0 for k in range(4)},
    }
    for pair in combinations(range(4), 2):
        r = rho[pair]
        dets[pair] = (1 - r) * (1 + r)
    for a, b, c in combinations(range(4), 3):
        ab, ac, bc = rho[(a, b)], rho[(a, c)], rho[(b, c)]
        dets[(a, b, c)] = 1 + 2 * ab * ac * bc - ab**2 - ac**2 - bc**2
    full = (0, 1, 2, 3)
    dets[full] = dets[(1, 2, 3)] + sum(rho[(0, k)] * _adjugate(rho, full, 0, k) for k in (1, 2, 3))
    return dets


def _nonsingular(dets: dict[tuple[int, ...], torch.Tensor | float], tol: float) -> torch.Tensor:
    """Whether no variable is (numerically) a linear function of others, checked on every principal minor."""
    # det(S) / det(S without k) is k's residual variance given the rest of S; the full 4x4 one is within a
    # factor 4 of the smallest eigenvalue, and the smaller minors catch collinearities that leave it noisy.
    ok = torch.ones_like(dets[(0, 1, 2, 3)], dtype=torch.bool)
    for subset, det in dets.items():
        for k in subset if len(subset) > 1 else ():
            ok &= det > tol * dets[tuple(v for v in subset if v != k)]
    return ok


def _mutual_info(dets: dict[tuple[int, ...], torch.Tensor | float], a: str, b: str) -> torch.Tensor:
    """I(past of node a; future of node b) from log-determinants (nats)."""
    past, future = _PAST[a], _FUTURE[b]
    return 0.5 * torch.log(dets[past] * dets[future] / dets[past + future])


def _mean_knowns_mmi(
    dets: dict[tuple[int, ...], torch.Tensor | float],
) -> dict[tuple[str, str], torch.Tensor]:
    """Time-means of the 16 lattice knowns under MMI redundancy, in closed form."""
    knowns = {(a, b): _mutual_info(dets, a, b) for a in "xys" for b in "xys"}
    for node in "xys":
        knowns["r", node] = torch.minimum(knowns["x", node], knowns["y", node])
        knowns[node, "r"] = torch.minimum(knowns[node, "x"], knowns[node, "y"])
    knowns["r", "r"] = torch.minimum(
        torch.minimum(knowns["x", "x"], knowns["x", "y"]),
        torch.minimum(knowns["y", "x"], knowns["y", "y"]),
    )
    return knowns


def _mean_knowns_ccs(
    rho: dict[tuple[int, int], torch.Tensor],
    dets: dict[tuple[int, ...], torch.Tensor | float],
    z_past: torch.Tensor,
    z_future: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    local_chunk: int,
) -> dict[tuple[str, str], torch.Tensor]:
    """Time-means of the 16 lattice knowns under CCS redundancy, for pairs (i, j) of a prompt group."""
    consts, weights = _mi_forms(rho, dets)
    redundancies = [("r", node) for node in "xys"] + [(node, "r") for node in "xys"] + [("r", "r")]
    sums = {key: torch.empty_like(consts[0]) for key in redundancies}
    for c0 in range(0, i.numel(), local_chunk):
        part = slice(c0, c0 + local_chunk)
        ii, jj = i[part], j[part]
        z = [z_past.index_select(1, ii), z_past.index_select(1, jj)]
        z += [z_future.index_select(1, ii), z_future.index_select(1, jj)]
        local = _local_knowns(_local_mis(consts[:, :, part], weights[:, :, part], z), "CCS")
        for key in redundancies:
            sums[key][:, part] = local[key].sum(-1)
    steps = z_past.shape[-1]
    # The mean of a local mutual information over the estimation samples is exactly its closed form.
    return {
        **dict(zip(_MI_KEYS, consts.unbind())),
        **{key: total / steps for key, total in sums.items()},
    }


def _mi_forms(
    rho: dict[tuple[int, int], torch.Tensor],
    dets: dict[tuple[int, ...], torch.Tensor | float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mutual informations as constant + quadratic form in z-scores (constants by _MI_KEYS, weights _MI_TERMS)."""
    inverses: dict[tuple[int, ...], dict[tuple[int, int], torch.Tensor | float]] = {}

    def inverse(subset: tuple[int, ...], p: int, q: int) -> torch.Tensor | float:
        if subset not in inverses:
            det = dets[subset]
            inverses[subset] = {
                (a, b): (dets[tuple(v for v in subset if v != a)] if a == b else _adjugate(rho, subset, a, b)) / det
                for a, b in combinations_with_replacement(subset, 2)
            }
        return inverses[subset].get((p, q), 0.0)

    weights = []
    for (a, b), (p, q) in _MI_TERMS:
        # i_t = 0.5 log(det A det B / det AB) + 0.5 (q_A + q_B - q_AB), q_S = z_S' inv(Sigma_S) z_S.
        past, future = _PAST[a], _FUTURE[b]
        weight = inverse(past, p, q) + inverse(future, p, q) - inverse(past + future, p, q)
        weights.append(0.5 * weight if p == q else weight)
    consts = torch.stack([_mutual_info(dets, a, b) for a, b in _MI_KEYS])
    return consts, torch.stack(weights)


def _local_mis(
    consts: torch.Tensor, weights: torch.Tensor, z: list[torch.Tensor]
) -> dict[tuple[str, str], torch.Tensor]:
    """The nine local mutual informations per time step, (prompts, pairs, steps) each, from _mi_forms' output."""
    products = {(p, q): z[p] * z[q] for p, q in combinations_with_replacement(range(4), 2)}
    mis: dict[tuple[str, str], torch.Tensor] = {}
    for (key, pq), weight in zip(_MI_TERMS, weights[..., None].unbind()):
        if key in mis:
            mis[key].addcmul_(weight, products[pq])
        else:
            mis[key] = torch.addcmul(consts[_MI_KEYS.index(key), ..., None], weight, products[pq])
    return mis


def _local_knowns(mis: dict[tuple[str, str], torch.Tensor], redundancy: str) -> dict[tuple[str, str], torch.Tensor]:
    """All 16 lattice knowns per time step, the redundancies formed from the local mutual informations as phyid does."""
    knowns = dict(mis)
    if redundancy == "MMI":
        for node in "xys":
            knowns["r", node] = _redundancy_mmi(mis["x", node], mis["y", node])
            knowns[node, "r"] = _redundancy_mmi(mis[node, "x"], mis[node, "y"])
        knowns["r", "r"] = _double_redundancy_mmi([mis["x", "x"], mis["x", "y"], mis["y", "x"], mis["y", "y"]])
        return knowns

    signs = {key: torch.sign(value) for key, value in mis.items()}

    def ccs(key_1: tuple[str, str], key_2: tuple[str, str], key_12: tuple[str, str]) -> torch.Tensor:
        # Local co-information, summed as phyid's -(mi_12 - mi_1 - mi_2), kept where all four signs agree.
        coinfo = mis[key_1] - mis[key_12]
        coinfo += mis[key_2]
        return coinfo.mul_(_all_same_sign([signs[key_1], signs[key_2], signs[key_12], torch.sign(coinfo)]))

    for node in "xys":
        knowns["r", node] = ccs(("x", node), ("y", node), ("s", node))
        knowns[node, "r"] = ccs((node, "x"), (node, "y"), (node, "s"))
    double_coinfo = knowns[_DOUBLE_COINFO[0][1]].neg()
    for coefficient, key in _DOUBLE_COINFO[1:]:
        double_coinfo.add_(knowns[key], alpha=coefficient)
    singles = [signs["x", "x"], signs["x", "y"], signs["y", "x"], signs["y", "y"]]
    knowns["r", "r"] = double_coinfo.mul_(_all_same_sign([*singles, torch.sign(double_coinfo)]))
    return knowns


def _all_same_sign(signs: list[torch.Tensor]) -> torch.Tensor:
    """1.0 where all the signs (-1, 0, 1) are equal and nonzero, else 0.0 (phyid also keeps all-zero: a zero value)."""
    # The others' sum times the last sign reaches len - 1 only when all agree and are nonzero. Float arithmetic
    # throughout: torch's comparisons and bool products are several times slower here.
    total = signs[0] + signs[1]
    for sign in signs[2:-1]:
        total += sign
    return total.mul_(signs[-1]).sub_(float(len(signs) - 2)).clamp_(min=0.0)


def _redundancy_mmi(mi_1: torch.Tensor, mi_2: torch.Tensor) -> torch.Tensor:
    """The local mutual information with the smaller time-mean (the second on ties, as phyid)."""
    return torch.where(mi_1.mean(-1, keepdim=True) < mi_2.mean(-1, keepdim=True), mi_1, mi_2)


def _double_redundancy_mmi(mis: list[torch.Tensor]) -> torch.Tensor:
    """The local mutual information with the smallest time-mean (the first on ties, as np.argmin)."""
    best, best_mean = mis[0], mis[0].mean(-1, keepdim=True)
    for mi in mis[1:]:
        mean = mi.mean(-1, keepdim=True)
        smaller = mean < best_mean
        best, best_mean = (
            torch.where(smaller, mi, best),
            torch.where(smaller, mean, best_mean),
        )
    return best


def _atoms_from_knowns(knowns: dict[tuple[str, str], torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Mobius inversion of the lattice knowns into the requested atoms."""
    atoms = {}
    for name in names:
        upper_past, upper_future = name[0], name[2]
        terms = [
            (mu_a * mu_b, knowns[a, b])
            for a, mu_a in _MOBIUS[upper_past].items()
            for b, mu_b in _MOBIUS[upper_future].items()
        ]
        value = terms[0][1]  # the atom's own known, coefficient +1
        for coefficient, known in terms[1:]:
            value = value + known if coefficient > 0 else value - known
        atoms[name] = value
    return atoms


def _invalid_frame(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    columns = ("prompt", "source", "target")
    if not rows:
        return pd.DataFrame(
            {
                **{c: pd.Series(dtype=np.int64) for c in columns},
                "reason": pd.Series(dtype=object),
            }
        )
    parts = [np.concatenate([row[k] for row in rows]) for k in range(4)]
    reasons = np.asarray(INVALID_REASONS, dtype=object)[parts[3].astype(np.int64) - 1]
    return pd.DataFrame(
        {
            **{c: parts[k].astype(np.int64) for k, c in enumerate(columns)},
            "reason": reasons,
        }
    )
