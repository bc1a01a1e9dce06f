"""Per-head synergy and redundancy scores, ranks, the layer profile and graph measures, from PhiID."""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

from metasyn.synergy.heads import (
    HeadActivity,
)
from metasyn.synergy.phiid import phiid_all_pairs

# phiid_all_pairs' invalid-pair table with no rows, for when no prompt needs decomposing.
_NO_INVALID_PAIRS = pd.DataFrame({
    "prompt": np.array([], dtype=np.int64),
    "source": np.array([], dtype=np.int64),
    "target": np.array([], dtype=np.int64),
    "reason": np.array([], dtype=object),
})  # fmt: skip


def phiid_matrices(
    activity: Sequence[HeadActivity],
    tau: int,
    redundancy: str,
    device: str | torch.device,
    steps: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Synergy and redundancy ``(prompts, heads, heads)`` of all head pairs, and the undefined pairs.

    ``steps``: per prompt, how many of its first generation steps to use (all when None). Prompts of one length
    are decomposed together; ``invalid_pairs["prompt"]`` indexes ``activity``.
    """
    lengths = [record.head_output_norms.shape[-1] for record in activity] if steps is None else list(steps)
    if len(lengths) != len(activity):
        raise ValueError(f"Got {len(lengths)} step counts for {len(activity)} prompts' activity.")
    heads = activity[0].head_output_norms[..., 0].numel()
    atoms = {name: np.full((len(activity), heads, heads), np.nan) for name in ("sts", "rtr")}
    invalid = []
    for length in sorted(set(lengths)):
        members = np.flatnonzero(np.asarray(lengths) == length)
        series = torch.stack([activity[index].head_output_norms[..., :length].flatten(0, 1) for index in members])
        with tqdm(desc=f"PhiID, {length} steps", unit="chunk") as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = phiid_all_pairs(
                series,
                tau=tau,
                redundancy=redundancy,
                atoms=tuple(atoms),
                device=device,
                progress=advance,
            )
        for name, values in atoms.items():
            values[members] = result.atoms[name]
        invalid.append(result.invalid_pairs.assign(prompt=members[result.invalid_pairs["prompt"].to_numpy()]))
    invalid_pairs = pd.concat(invalid).sort_values(["prompt", "source", "target"], kind="stable")
    return atoms["sts"], atoms["rtr"], invalid_pairs.reset_index(drop=True)


def phiid_matrices_before_end(
    activity: Sequence[HeadActivity],
    ends: pd.DataFrame,
    full_synergy: np.ndarray,
    full_redundancy: np.ndarray,
    tau: int,
    redundancy: str,
    device: str | torch.device,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``phiid_matrices`` on each prompt's first ``ends["steps_used"]`` steps; NaN where not ``ends["analysed"]``.

    A prompt that keeps every recorded step reuses its full matrices (``full_*``, ``(prompts, heads, heads)``).
    """
    recorded = np.array([record.head_output_norms.shape[-1] for record in activity])
    steps_used, analysed = ends["steps_used"].to_numpy(), ends["analysed"].to_numpy(bool)
    synergy, redundancy_matrices = np.array(full_synergy, dtype=float), np.array(full_redundancy, dtype=float)
    synergy[~analysed] = redundancy_matrices[~analysed] = np.nan
    truncated = np.flatnonzero(analysed & (steps_used < recorded))
    if not len(truncated):
        return synergy, redundancy_matrices, _NO_INVALID_PAIRS.copy()
    synergy[truncated], redundancy_matrices[truncated], invalid_pairs = phiid_matrices(
        [activity[index] for index in truncated], tau, redundancy, device, steps_used[truncated]
    )
    return synergy, redundancy_matrices, invalid_pairs.assign(prompt=truncated[invalid_pairs["prompt"].to_numpy()])


def degenerate_heads(
    invalid_pairs: pd.DataFrame,
    prompt_ids: Sequence[str],
    layers: int,
    heads_per_layer: int,
) -> pd.DataFrame:
    """Heads all of whose pairs are undefined in a prompt, with the commonest reason (schema in the docstring)."""
    total = layers * heads_per_layer
    ends = pd.concat(
        [
            invalid_pairs[["prompt", "source", "reason"]].rename(columns={"source": "head_index"}),
            invalid_pairs[["prompt", "target", "reason"]].rename(columns={"target": "head_index"}),
        ]
    )
    grouped = ends.groupby(["prompt", "head_index"])["reason"]
    summary = pd.DataFrame(
        {
            "pairs": grouped.size(),
            "reason": grouped.agg(lambda reasons: reasons.mode().iloc[0]),
        }
    )
    degenerate = summary[summary["pairs"] == total - 1].reset_index()
    return pd.DataFrame(
        {
            "prompt_id": np.asarray(prompt_ids, dtype=object)[degenerate["prompt"].to_numpy(dtype=int)],
            "head_index": degenerate["head_index"].astype(np.int64),
            "layer": (degenerate["head_index"] // heads_per_layer).astype(np.int64),
            "head": (degenerate["head_index"] % heads_per_layer).astype(np.int64),
            "reason": degenerate["reason"].astype(str),
        }
    )


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean skipping NaN; NaN (without numpy's warning) where every value is NaN."""
    counts = np.isfinite(values).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.nansum(values, axis) / counts, np.nan)


def heads_per_layer(head_numbers: np.ndarray | torch.Tensor | pd.Series) -> int:
    """Heads per layer, from the within-layer head numbers (0-based) of a layer-major head table."""
    return int(head_numbers.max()) + 1


def pair_means(matrix: np.ndarray) -> np.ndarray:
    """Each head's mean over its pairs (the diagonal left out), skipping NaN: ``(H,)`` from ``(H, H)``."""
    off_diagonal = ~np.eye(len(matrix), dtype=bool)
    return nanmean(np.where(off_diagonal, matrix, np.nan), axis=1)


def ranks_of_scored(synergy: np.ndarray, redundancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-head synergy and redundancy ranks among the heads where both are defined (NaN elsewhere)."""
    scored = np.isfinite(synergy) & np.isfinite(redundancy)
    ranks = np.full((2, len(synergy)), np.nan)
    ranks[0, scored], ranks[1, scored] = stats.rankdata(synergy[scored]), stats.rankdata(redundancy[scored])
    return ranks[0], ranks[1]


def profile_scores(syn_red_score: np.ndarray, layer_of_head: np.ndarray, layers: int) -> np.ndarray:
    """The layer profile's ``score``: the min-max scaled syn-red score averaged per layer, skipping NaN heads
    (NaN for a layer without a scored head)."""
    scaled = min_max_scaled(syn_red_score)
    finite = np.isfinite(scaled)
    totals = np.bincount(layer_of_head[finite], scaled[finite], minlength=layers)
    counts = np.bincount(layer_of_head[finite], minlength=layers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def min_max_scaled(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] by their finite minimum and maximum; NaN when those are equal or absent."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.full(len(values), np.nan)
    low, high = finite.min(), finite.max()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values - low) / (high - low)


def head_scores(synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int) -> pd.DataFrame:
    """Per-head mean synergy and redundancy over its pairs, their ranks and the syn-red score."""
    per_head = {"synergy": pair_means(synergy), "redundancy": pair_means(redundancy)}
    scored = np.isfinite(per_head["synergy"]) & np.isfinite(per_head["redundancy"])
    ranks = dict(zip(per_head, ranks_of_scored(per_head["synergy"], per_head["redundancy"]), strict=True))
    table = pd.DataFrame({"head_index": np.arange(len(synergy))})
    table["layer"] = table["head_index"] // heads_per_layer
    table["head"] = table["head_index"] % heads_per_layer
    for name, values in per_head.items():
        table[name] = np.where(scored, values, np.nan)
        table[f"{name}_rank"] = ranks[name]
    table["syn_red_score"] = table["synergy_rank"] - table["redundancy_rank"]
    return table


def layer_profile(scores: pd.DataFrame) -> pd.DataFrame:
    """Min-max scaled syn-red score averaged per layer, against normalised depth (schema in the docstring)."""
    score = scores["syn_red_score"].to_numpy(dtype=float)
    per_layer = pd.Series(min_max_scaled(score)).groupby(scores["layer"].to_numpy()).agg(["std", "count"])
    layers = int(scores["layer"].max()) + 1
    per_layer = per_layer.reindex(range(layers))
    return pd.DataFrame(
        {
            "layer": np.arange(layers),
            "depth": np.linspace(0.0, 1.0, layers),
            "score": profile_scores(score, scores["layer"].to_numpy(dtype=np.int64), layers),
            "score_sd": per_layer["std"].to_numpy(),
            "heads": per_layer["count"].fillna(0).astype(np.int64).to_numpy(),
        }
    )


def synergy_redundancy_correlation(scores: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of per-head synergy and redundancy over scored heads."""
    scored = scores.dropna(subset=["synergy", "redundancy"])
    result = stats.spearmanr(scored["synergy"], scored["redundancy"])
    return {
        "rho": float(result.statistic),
        "p_value": float(result.pvalue),
        "heads": len(scored),
    }


def top_edge_graph(matrix: np.ndarray, edge_fraction: float) -> nx.Graph:
    """Graph of the heads with a finite value, keeping the strongest ``edge_fraction`` of positive pair weights."""
    if not 0 < edge_fraction <= 1:
        raise ValueError(f"edge_fraction must be in (0, 1], got {edge_fraction}.")
    nodes = np.flatnonzero(np.isfinite(np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix)).any(1))
    source, target = np.triu_indices(len(matrix), 1)
    weights = matrix[source, target]
    finite = np.flatnonzero(np.isfinite(weights))
    keep = finite[np.argsort(-weights[finite], kind="stable")[: math.ceil(edge_fraction * len(finite))]]
    # Modularity needs non-negative weights; a negative atom is not a connection.
    keep = keep[weights[keep] > 0]
    graph = nx.Graph()
    graph.add_nodes_from(nodes.tolist())
    graph.add_weighted_edges_from(zip(source[keep].tolist(), target[keep].tolist(), weights[keep].tolist()))
    return graph


def network_measures(matrix: np.ndarray, edge_fraction: float, seed: int) -> dict[str, float]:
    """Global efficiency (binary) and Louvain modularity (weighted) of a top-edge graph."""
    graph = top_edge_graph(matrix, edge_fraction)
    if graph.number_of_edges() == 0:
        modularity, communities = math.nan, graph.number_of_nodes()
    else:
        partition = nx.community.louvain_communities(graph, weight="weight", seed=seed)
        modularity, communities = (
            nx.community.modularity(graph, partition, weight="weight"),
            len(partition),
        )
    return {
        "global_efficiency": nx.global_efficiency(graph),
        "modularity": modularity,
        "communities": communities,
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
    }
