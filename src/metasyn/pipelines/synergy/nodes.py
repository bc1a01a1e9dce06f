"""synergy nodes: head activity -> PhiID -> head scores, layer profile, graph measures -> ablation, figures.

Resume: ``head_activity`` is a ``PartitionedDataset`` with one safetensors file per prompt, saved lazily, and
``head_activity_saved`` reads the same folder, leaving out (with a warning) a file it cannot read.
``extract_head_activity`` returns callables for the prompts without a valid saved file only, so an interrupted
run continues with the next unsaved batch and a complete one recomputes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from metasyn import synergy
from metasyn.lm.models import LanguageModel, describe_model, resolve_device
from metasyn.lm.precision import computing_in
from metasyn.lm.prompts import render_prompts
from metasyn.synergy import plots as synergy_plots

logger = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]


def select_synergy_prompts(prompts: pd.DataFrame, per_category: int | None) -> pd.DataFrame:
    """The first ``per_category`` prompts of each category (all when None), checked."""
    return synergy.select_prompts(prompts, per_category)


def describe_measured_model(model: LanguageModel) -> dict:
    """The loaded model's origin, architecture, size, dtype and device, for the report."""
    return describe_model(model)


def extract_head_activity(
    model: LanguageModel, prompt_set: pd.DataFrame, saved_activity: dict[str, Tensors], activity: dict
) -> dict[str, Callable[[], Tensors]]:
    """Per-prompt head activity to save lazily, for the prompts without a saved result of the same settings."""
    rendered = render_prompts(model.tokenizer, [[{"role": "user", "content": text}] for text in prompt_set["prompt"]])
    token_ids = synergy.prompt_token_ids(model.tokenizer, rendered)
    todo = set(synergy.prompts_to_record(prompt_set["id"], token_ids, saved_activity, activity["steps"]))
    logger.info("Head activity: %d of %d prompts to record, the rest saved already.", len(todo), len(prompt_set))
    pending = {prompt_id: text for prompt_id, text in zip(prompt_set["id"], rendered) if prompt_id in todo}
    return synergy.lazy_head_activity(
        model, pending, activity["steps"], activity["batch_size"], activity["generation_dtype"]
    )


def _matrix_tensors(per_prompt: np.ndarray, layers: int, heads_per_layer: int) -> Tensors:
    """Per-prompt and prompt-mean matrices with each head's layer and position, for ``TensorDataset``."""
    head_index = torch.arange(layers * heads_per_layer)
    return {
        "per_prompt": torch.from_numpy(per_prompt),
        "mean": torch.from_numpy(synergy.nanmean(per_prompt, axis=0)),
        "layer": head_index // heads_per_layer,
        "head": head_index % heads_per_layer,
    }


def compute_phiid(
    head_activity: dict[str, Callable[[], Tensors]], prompt_set: pd.DataFrame, phiid: dict
) -> tuple[Tensors, Tensors, pd.DataFrame]:
    """PhiID synergy and redundancy of every head pair per prompt, and the heads degenerate in some prompt."""
    activity = synergy.load_activity(head_activity, prompt_set["id"])
    layers, heads_per_layer, _ = activity[0].head_output_norms.shape
    synergy_matrices, redundancy_matrices, invalid_pairs = synergy.phiid_matrices(
        activity, phiid["tau"], phiid["redundancy"], resolve_device(phiid["device"])
    )
    degenerate = synergy.degenerate_heads(invalid_pairs, prompt_set["id"], layers, heads_per_layer)
    if len(invalid_pairs):
        logger.warning(
            "PhiID undefined for %d head pairs (%s); %d (prompt, head) cases are degenerate heads, excluded there.",
            len(invalid_pairs),
            invalid_pairs["reason"].value_counts().to_dict(),
            len(degenerate),
        )
    return (
        _matrix_tensors(synergy_matrices, layers, heads_per_layer),
        _matrix_tensors(redundancy_matrices, layers, heads_per_layer),
        degenerate,
    )


def compute_phiid_before_natural_end(
    head_activity: dict[str, Callable[[], Tensors]],
    prompt_set: pd.DataFrame,
    phiid_synergy: Tensors,
    phiid_redundancy: Tensors,
    phiid: dict,
    truncation: dict,
) -> tuple[Tensors, Tensors, pd.DataFrame]:
    """PhiID per prompt on its steps before the natural end (at most ``truncation.steps``), and those ends."""
    synergy.check_truncation_settings(truncation, phiid["tau"])
    activity = synergy.load_activity(head_activity, prompt_set["id"])
    layers, heads_per_layer, _ = activity[0].head_output_norms.shape
    ends = synergy.natural_ends(prompt_set, activity, truncation["steps"], truncation["min_steps"])
    logger.info(
        "PhiID before the natural end: %d of %d prompts analysed (median %d steps), %d with too few steps.",
        ends["analysed"].sum(),
        len(ends),
        ends["steps_used"].median(),
        (~ends["analysed"]).sum(),
    )
    synergy_matrices, redundancy_matrices, invalid_pairs = synergy.phiid_matrices_before_end(
        activity,
        ends,
        phiid_synergy["per_prompt"].numpy(),
        phiid_redundancy["per_prompt"].numpy(),
        phiid["tau"],
        phiid["redundancy"],
        resolve_device(phiid["device"]),
    )
    if len(invalid_pairs):
        logger.warning(
            "PhiID before the natural end undefined for %d head pairs (%s).",
            len(invalid_pairs),
            invalid_pairs["reason"].value_counts().to_dict(),
        )
    return (
        _matrix_tensors(synergy_matrices, layers, heads_per_layer),
        _matrix_tensors(redundancy_matrices, layers, heads_per_layer),
        ends,
    )


def score_heads(phiid_synergy: Tensors, phiid_redundancy: Tensors) -> pd.DataFrame:
    """Per-head synergy, redundancy, ranks and syn-red score from the prompt-mean matrices."""
    heads_per_layer = synergy.heads_per_layer(phiid_synergy["head"])
    return synergy.head_scores(phiid_synergy["mean"].numpy(), phiid_redundancy["mean"].numpy(), heads_per_layer)


def summarize_layer_profile(head_scores: pd.DataFrame) -> pd.DataFrame:
    """Per layer: depth and the mean min-max scaled syn-red score of its heads."""
    return synergy.layer_profile(head_scores)


def measure_networks(phiid_synergy: Tensors, phiid_redundancy: Tensors, head_scores: pd.DataFrame, graph: dict) -> dict:
    """Graph measures of the synergy and redundancy networks, and the synergy-redundancy rank correlation."""
    fraction, seed = graph["edge_fraction"], graph["seed"]
    return {
        "edge_fraction": fraction,
        "synergy_network": synergy.network_measures(phiid_synergy["mean"].numpy(), fraction, seed),
        "redundancy_network": synergy.network_measures(phiid_redundancy["mean"].numpy(), fraction, seed),
        "synergy_redundancy_spearman": synergy.synergy_redundancy_correlation(head_scores),
    }


def estimate_head_output_spread(
    model: LanguageModel, head_activity: dict[str, Callable[[], Tensors]], prompt_set: pd.DataFrame, ablation: dict
) -> Tensors:
    """Per head and dimension, the SD of the head outputs over the ablation prompts' steps (the noise scale)."""
    synergy.check_ablation_settings(ablation)
    prompt_set = synergy.select_prompts(prompt_set, ablation["prompts_per_category"])
    activity = synergy.load_activity(head_activity, prompt_set["id"])
    return synergy.head_output_spread(model.model, activity, ablation["batch_size"], model.tokenizer.pad_token_id)


def ablate_heads_cumulatively(
    model: LanguageModel,
    head_activity: dict[str, Callable[[], Tensors]],
    prompt_set: pd.DataFrame,
    head_scores: pd.DataFrame,
    head_output_spread: Tensors,
    ablation: dict,
) -> pd.DataFrame:
    """Per ablation prompt, the behaviour divergence as heads are removed in syn-red, reverse and random orders."""
    noise = synergy.ablation_noise(ablation, head_output_spread)
    fractions = synergy.ablation_fractions(ablation["fraction_step"])
    orders = synergy.ablation_orders(head_scores, ablation["random_orders"], ablation["seed"])
    prompt_set = synergy.select_prompts(prompt_set, ablation["prompts_per_category"])
    activity = synergy.load_activity(head_activity, prompt_set["id"])
    return synergy.ablation_divergences(
        computing_in(model, ablation["dtype"]).model,
        activity,
        prompt_set["id"],
        orders,
        fractions,
        ablation["batch_size"],
        model.tokenizer.pad_token_id,
        noise,
    )


def summarize_ablation_curves(ablation_divergences: pd.DataFrame) -> pd.DataFrame:
    """Per order and fraction: the divergence averaged over prompts, then mean and SD over random orders."""
    return synergy.ablation_curves(ablation_divergences)


def plot_phiid_matrices(phiid_synergy: Tensors, phiid_redundancy: Tensors) -> Figure:
    """Prompt-mean synergy and redundancy matrices, heads ordered by layer."""
    heads_per_layer = synergy.heads_per_layer(phiid_synergy["head"])
    return synergy_plots.phiid_matrices_figure(
        phiid_synergy["mean"].numpy(), phiid_redundancy["mean"].numpy(), heads_per_layer
    )


def plot_head_scores(head_scores: pd.DataFrame) -> Figure:
    """Per-head syn-red score as a layer x head grid."""
    return synergy_plots.head_score_figure(head_scores)


def plot_layer_profile(layer_profile: pd.DataFrame) -> Figure:
    """The layer profile against normalised depth."""
    return synergy_plots.layer_profile_figure(layer_profile)


def plot_ablation_curves(ablation_curves: pd.DataFrame) -> Figure:
    """Divergence against the fraction of heads removed, per order."""
    return synergy_plots.ablation_curves_figure(ablation_curves)
