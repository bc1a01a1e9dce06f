"""The synergistic core of a model (Urbina-Rodriguez et al., arXiv 2601.06851): from head activity to ablation.

Steps: per-head output norms over generation (``metasyn.synergy.heads``) -> PhiID synergy (``sts``) and redundancy
(``rtr``) of every head pair per prompt (``metasyn.synergy.phiid``) -> per-head scores and ranks -> the layer profile
(the paper's inverted U) and graph measures -> cumulative head ablation in score order, the heads zeroed or
given Gaussian noise (``metasyn.synergy.ablation``). PhiID is also computed on each prompt's steps before its
natural end (``natural_ends``), to show how much of the result comes from text past the point where the model
would have stopped.

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
``ablation_divergences`` (one row per order, repeat, fraction and prompt)
    ``order`` (``synergistic_first`` | ``redundant_first`` | ``random``), ``repeat`` (int, 0-based: which random
    order; 0 for the other two), ``fraction`` (float, of scored heads), ``heads_removed`` (int), ``prompt_id``
    (str), ``divergence`` (float: mean over the prompt's generation steps of KL(original || ablated) next-token
    distributions, nats; 0 with no head removed).
``ablation_curves`` (one row per order and fraction; ``ablation_curves(ablation_divergences)``)
    ``order``, ``fraction``, ``heads_removed`` as above, ``divergence`` (mean over repeats of the mean over
    prompts), ``divergence_sd`` (SD over repeats of the prompt means, ddof=1; NaN for a single order),
    ``repeats`` (int).
``head_output_spread`` (tensors, base model only)
    ``sd`` (float32 ``(layers, heads, head_dim)``: SD, ddof=1, of each dimension of each head's ``o_proj`` input
    over every prompt's generation steps), ``positions`` (int64 scalar: the positions pooled).
``natural_ends`` (one row per prompt, in prompt-set order)
    ``prompt_id``, ``category`` (str), ``natural_end`` (nullable int: the step at which the model chose
    end-of-sequence, <NA> if it never did), ``steps_used`` (int: steps before the natural end, at most
    ``synergy.truncation.steps``), ``analysed`` (bool: ``steps_used >= synergy.truncation.min_steps``; the
    prompt's ``*_truncated`` PhiID matrices are NaN otherwise).
``degenerate_heads`` (one row per prompt and degenerate head)
    ``prompt_id`` (str), ``head_index, layer, head`` (int), ``reason`` (str, from ``metasyn.synergy.phiid``).
"""

from metasyn.synergy.ablation import (
    ABLATION_METHODS,
    DIVERGENCE_COLUMNS,
    NoiseAblation,
    ablation_curves,
    ablation_divergences,
    ablation_fractions,
    ablation_noise,
    ablation_orders,
    check_ablation_settings,
    head_output_spread,
    removal_mask,
)
from metasyn.synergy.activity import (
    PROMPT_COLUMNS,
    PROMPT_ID_PATTERN,
    check_truncation_settings,
    lazy_head_activity,
    load_activity,
    natural_ends,
    prompt_token_ids,
    prompts_to_record,
    select_prompts,
)
from metasyn.synergy.scores import (
    degenerate_heads,
    head_scores,
    heads_per_layer,
    layer_profile,
    nanmean,
    network_measures,
    phiid_matrices,
    phiid_matrices_before_end,
    synergy_redundancy_correlation,
    top_edge_graph,
)

__all__ = [
    "ABLATION_METHODS",
    "DIVERGENCE_COLUMNS",
    "PROMPT_COLUMNS",
    "PROMPT_ID_PATTERN",
    "NoiseAblation",
    "ablation_curves",
    "ablation_divergences",
    "ablation_fractions",
    "ablation_noise",
    "ablation_orders",
    "check_ablation_settings",
    "check_truncation_settings",
    "degenerate_heads",
    "head_output_spread",
    "head_scores",
    "heads_per_layer",
    "layer_profile",
    "lazy_head_activity",
    "load_activity",
    "nanmean",
    "natural_ends",
    "network_measures",
    "phiid_matrices",
    "phiid_matrices_before_end",
    "prompt_token_ids",
    "prompts_to_record",
    "removal_mask",
    "select_prompts",
    "synergy_redundancy_correlation",
    "top_edge_graph",
]
