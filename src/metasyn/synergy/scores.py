"""The synergistic core of a model (Urbina-Rodriguez et al., arXiv 2601.06851): from head activity to ablation.

Steps: per-head output norms over generation (``metasyn.heads``) -> PhiID synergy (``sts``) and redundancy
(``rtr``) of every head pair per prompt (``metasyn.phiid``) -> per-head scores and ranks -> the layer profile
(the paper's inverted U) and graph measures -> cumulative head ablation in score order.

Heads are numbered layer-major: ``head_index = layer * heads_per_layer + head``; every matrix is ordered so.
A head whose pairs are all undefined in a prompt (constant or non-finite activity) is *degenerate* there and
reported; means over prompts skip undefined values, so a head drops out of the scores (NaN) only when it is
degenerate in every prompt.

Schemas (read by the comparison pipeline):

``head_scores`` (one row per head)
    ``head_index, layer, head`` (int); ``synergy``, ``redundancy`` (float: mean atom over the head's pairs of the
    prompt-mean matrix); ``synergy_rank``, ``redundancy_rank`` (float, 1 = lowest, ties averaged);
    ``syn_red_score = synergy_rank - redundancy_rank`` (float, > 0: more synergistic than redundant). Values are
    NaN for excluded heads.
``layer_profile`` (one row per layer)
    ``layer`` (int), ``depth`` (float, layer / (layers - 1)), ``score`` (mean over the layer's heads of the
    min-max scaled ``syn_red_score``), ``score_sd`` (their SD, ddof=1), ``heads`` (int, heads scored).
``ablation_curves`` (one row per order and fraction)
    ``order`` (``synergistic_first`` | ``redundant_first`` | ``random``), ``fraction`` (float, of scored heads),
    ``heads_removed`` (int), ``divergence`` (mean over repeats of the mean over prompts and steps of
    KL(original || ablated) next-token distributions, nats), ``divergence_sd`` (SD over repeats, NaN for a single
    order), ``repeats`` (int).
``degenerate_heads`` (one row per prompt and degenerate head)
    ``prompt_id`` (str), ``head_index, layer, head`` (int), ``reason`` (str, from ``metasyn.phiid``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import networkx as nx
import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from metasyn.heads import (
    HeadActivity,
    ablate_heads,
    head_layout,
    mean_step_divergence,
    record_head_activity,
    step_log_probs,
    teacher_forced_batch,
)
from metasyn.models import LanguageModel
from metasyn.phiid import phiid_all_pairs

logger = logging.getLogger(__name__)

PROMPT_COLUMNS = ["id", "category", "prompt"]
# Prompt ids name the per-prompt activity files.
PROMPT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def select_prompts(prompts: pd.DataFrame, per_category: int | None) -> pd.DataFrame:
    """Check a prompt table and keep the first ``per_category`` prompts of each category (all when None)."""
    missing = [column for column in PROMPT_COLUMNS if column not in prompts.columns]
    if missing:
        raise ValueError(f"The synergy prompt table lacks columns {missing}; it needs {PROMPT_COLUMNS}.")
    if prompts.empty:
        raise ValueError("The synergy prompt table is empty.")
    bad_ids = [value for value in prompts["id"].astype(str) if not PROMPT_ID_PATTERN.fullmatch(value)]
    if bad_ids:
        raise ValueError(f"Prompt ids become file names: use letters, digits, '_', '.', '-' only. Bad: {bad_ids[:5]}.")
    repeated = prompts["id"][prompts["id"].duplicated()].unique()
    if len(repeated):
        raise ValueError(f"Prompt ids must be unique; repeated: {list(repeated[:5])}.")
    if per_category is not None and per_category < 1:
        raise ValueError(f"prompts_per_category must be at least 1 (or null for all), got {per_category}.")
    table = prompts[PROMPT_COLUMNS].astype(str)
    if per_category is not None:
        table = table.groupby("category", sort=False).head(per_category)
    return table.reset_index(drop=True)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, rendered: Sequence[str]) -> list[torch.Tensor]:
    """Token ids of rendered prompts, exactly as generation encodes them."""
    return [torch.tensor(ids) for ids in tokenizer(list(rendered), add_special_tokens=False)["input_ids"]]


def prompts_to_record(
    prompt_ids: Sequence[str],
    token_ids: Sequence[torch.Tensor],
    saved: Mapping[str, Mapping[str, torch.Tensor]],
    steps: int,
) -> list[str]:
    """Prompts without a saved activity of the same prompt tokens and step count (those are reused)."""
    todo = []
    for prompt_id, tokens in zip(prompt_ids, token_ids):
        previous = saved.get(prompt_id)
        reusable = (
            previous is not None
            and len(previous["completion_token_ids"]) == steps
            and torch.equal(previous["prompt_token_ids"], tokens)
        )
        if not reusable:
            todo.append(prompt_id)
    return todo


def lazy_head_activity(
    lm: LanguageModel, rendered: Mapping[str, str], steps: int, batch_size: int
) -> dict[str, Callable[[], dict[str, torch.Tensor]]]:
    """One callable per prompt id giving its activity tensors, computed a batch at a time on first call.

    Batches follow sorted prompt ids, the order in which a ``PartitionedDataset`` saves lazy partitions, so each
    batch is computed once and its prompts are written before the next batch starts.
    """
    ordered = sorted(rendered)
    batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]

    @cache
    def run(batch: int) -> dict[str, dict[str, torch.Tensor]]:
        ids = batches[batch]
        logger.info("Head activity: batch %d of %d (%d prompts, %d steps)", batch + 1, len(batches), len(ids), steps)
        activity = record_head_activity(lm, [rendered[prompt_id] for prompt_id in ids], steps, batch_size)
        return {prompt_id: record.to_tensors() for prompt_id, record in zip(ids, activity)}

    def loader(batch: int, prompt_id: str) -> Callable[[], dict[str, torch.Tensor]]:
        return lambda: run(batch)[prompt_id]

    return {prompt_id: loader(index, prompt_id) for index, ids in enumerate(batches) for prompt_id in ids}


def load_activity(
    partitions: Mapping[str, Callable[[], dict[str, torch.Tensor]]], prompt_ids: Sequence[str]
) -> list[HeadActivity]:
    """The selected prompts' activity from per-prompt partitions, checked for one shape."""
    missing = [prompt_id for prompt_id in prompt_ids if prompt_id not in partitions]
    if missing:
        raise ValueError(
            f"No head activity saved for prompts {missing[:5]}: its extraction did not run or was interrupted. Run "
            "the extract_head_activity node again (without --only-missing-outputs); it records only missing prompts."
        )
    activity = [HeadActivity.from_tensors(partitions[prompt_id]()) for prompt_id in prompt_ids]
    shapes = {tuple(record.head_output_norms.shape) for record in activity}
    if len(shapes) != 1:
        raise ValueError(
            f"Saved head activity has mixed shapes {sorted(shapes)} (layers, heads, steps): it comes from different "
            "models or step counts. Delete the model's head_activity folder and run again."
        )
    return activity


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
            series, tau=tau, redundancy=redundancy, atoms=("sts", "rtr"), device=device, progress=advance
        )
    return result.atoms["sts"], result.atoms["rtr"], result.invalid_pairs


def degenerate_heads(
    invalid_pairs: pd.DataFrame, prompt_ids: Sequence[str], layers: int, heads_per_layer: int
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
    summary = pd.DataFrame({"pairs": grouped.size(), "reason": grouped.agg(lambda reasons: reasons.mode().iloc[0])})
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
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "heads": len(scored)}


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
        modularity, communities = nx.community.modularity(graph, partition, weight="weight"), len(partition)
    return {
        "global_efficiency": nx.global_efficiency(graph),
        "modularity": modularity,
        "communities": communities,
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
    }


def ablation_orders(scores: pd.DataFrame, random_orders: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Scored heads in decreasing and increasing syn-red score, and ``random_orders`` seeded permutations."""
    scored = scores.dropna(subset=["syn_red_score"])
    # Ties broken by head index, so the orders are reproducible.
    ascending = scored.sort_values(["syn_red_score", "head_index"], kind="stable")["head_index"].to_numpy()
    descending = scored.sort_values(["syn_red_score", "head_index"], ascending=[False, True], kind="stable")
    rng = np.random.default_rng(seed)
    return {
        "synergistic_first": [descending["head_index"].to_numpy()],
        "redundant_first": [ascending],
        "random": [rng.permutation(ascending) for _ in range(random_orders)],
    }


def ablation_fractions(step: float) -> np.ndarray:
    """Fractions of heads removed: 0, step, 2 step, ..., 1."""
    intervals = round(1 / step) if 0 < step <= 1 else 0
    if not intervals or not math.isclose(intervals * step, 1.0):
        raise ValueError(f"The ablation fraction step must divide 1 (e.g. 0.05 = every 5%), got {step}.")
    return np.linspace(0.0, 1.0, intervals + 1)


def removal_mask(heads: np.ndarray, layers: int, heads_per_layer: int) -> torch.Tensor:
    """Boolean ``layers x heads`` mask marking the given flat head indices."""
    mask = torch.zeros(layers * heads_per_layer, dtype=torch.bool)
    mask[torch.as_tensor(heads, dtype=torch.long)] = True
    return mask.view(layers, heads_per_layer)


def ablation_curves(
    model: PreTrainedModel,
    activity: Sequence[HeadActivity],
    orders: Mapping[str, Sequence[np.ndarray]],
    fractions: Sequence[float],
    batch_size: int,
    pad_token_id: int,
) -> pd.DataFrame:
    """Behaviour divergence as heads are removed cumulatively in each order (schema in the module docstring).

    The ablated model reads the original greedy tokens (teacher forcing); the divergence of one prompt is the
    mean over its generation steps of KL(original || ablated) next-token distributions.
    """
    if not all(0 <= fraction <= 1 for fraction in fractions):
        raise ValueError(f"Ablation fractions must lie in [0, 1], got {list(fractions)}.")
    layout = head_layout(model)
    scored = len(next(iter(orders.values()))[0])
    removed = {
        (name, repeat, fraction): frozenset(order[: round(fraction * scored)].tolist())
        for name, repeats in orders.items()
        for repeat, order in enumerate(repeats)
        for fraction in fractions
    }
    # Orders share prefixes (none removed, all removed); each distinct head set is evaluated once.
    distinct = sorted(set(removed.values()), key=lambda heads: (len(heads), sorted(heads)))
    divergence_sum = dict.fromkeys(distinct, 0.0)
    batches = range(0, len(activity), batch_size)
    with tqdm(total=len(batches) * len(distinct), desc="Head ablation", unit="forward") as bar:
        for start in batches:
            records = activity[start : start + batch_size]
            steps = len(records[0].completion_token_ids)
            batch = teacher_forced_batch(
                [record.prompt_token_ids for record in records],
                [record.completion_token_ids for record in records],
                pad_token_id,
            )
            reference = step_log_probs(model, batch, steps)
            for heads in distinct:
                with ablate_heads(model, removal_mask(np.fromiter(heads, int), layout.layers, layout.heads)):
                    ablated = step_log_probs(model, batch, steps)
                divergence_sum[heads] += float(mean_step_divergence(reference, ablated).sum())
                bar.update()
    rows = []
    for name, repeats in orders.items():
        for fraction in fractions:
            values = [divergence_sum[removed[name, repeat, fraction]] / len(activity) for repeat in range(len(repeats))]
            rows.append(
                {
                    "order": name,
                    "fraction": float(fraction),
                    "heads_removed": round(fraction * scored),
                    "divergence": float(np.mean(values)),
                    "divergence_sd": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                    "repeats": len(values),
                }
            )
    return pd.DataFrame(rows)
