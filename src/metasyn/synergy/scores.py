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


def phiid_matrices(
    activity: Sequence[HeadActivity],
    tau: int,
    redundancy: str,
    device: str | torch.device,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Synergy and redundancy ``(prompts, heads, heads)`` of all head pairs, and the undefined pairs."""
    series = torch.stack([record.head_output_norms.flatten(0, 1) for record in activity])
    with tqdm(desc="PhiID", unit="chunk") as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = phiid_all_pairs(
            series,
            tau=tau,
            redundancy=redundancy,
            atoms=("sts", "rtr"),
            device=device,
            progress=advance,
        )
    return result.atoms["sts"], result.atoms["rtr"], result.invalid_pairs


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


def head_scores(synergy: np.ndarray, redundancy: np.ndarray, heads_per_layer: int) -> pd.DataFrame:
    """Per-head mean synergy and redundancy over its pairs, their ranks and the syn-red score."""
    off_diagonal = ~np.eye(len(synergy), dtype=bool)
    per_head = {
        name: nanmean(np.where(off_diagonal, matrix, np.nan), axis=1)
        for name, matrix in (("synergy", synergy), ("redundancy", redundancy))
    }
    scored = np.isfinite(per_head["synergy"]) & np.isfinite(per_head["redundancy"])
    table = pd.DataFrame({"head_index": np.arange(len(synergy))})
    table["layer"] = table["head_index"] // heads_per_layer
    table["head"] = table["head_index"] % heads_per_layer
    for name, values in per_head.items():
        table[name] = np.where(scored, values, np.nan)
        table[f"{name}_rank"] = np.nan
        table.loc[scored, f"{name}_rank"] = stats.rankdata(values[scored])
    table["syn_red_score"] = table["synergy_rank"] - table["redundancy_rank"]
    return table


def layer_profile(scores: pd.DataFrame) -> pd.DataFrame:
    """Min-max scaled syn-red score averaged per layer, against normalised depth (schema in the docstring)."""
    score = scores["syn_red_score"]
    scaled = (score - score.min()) / (score.max() - score.min())
    per_layer = scaled.groupby(scores["layer"]).agg(["mean", "std", "count"])
    layers = int(scores["layer"].max()) + 1
    per_layer = per_layer.reindex(range(layers))
    return pd.DataFrame(
        {
            "layer": np.arange(layers),
            "depth": np.linspace(0.0, 1.0, layers),
            "score": per_layer["mean"].to_numpy(),
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
