"""The synergistic core of a model (Urbina-Rodriguez et al., arXiv 2601.06851): from head activity to ablation.

Steps: per-head output norms over generation (``metasyn.synergy.heads``) -> PhiID synergy (``sts``) and redundancy
(``rtr``) of every head pair per prompt (``metasyn.synergy.phiid``) -> per-head scores and ranks -> the layer profile
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
    ``prompt_id`` (str), ``head_index, layer, head`` (int), ``reason`` (str, from ``metasyn.synergy.phiid``).
"""

from metasyn.synergy.ablation import (
    ablation_curves,
    ablation_fractions,
    ablation_orders,
    removal_mask,
)
from metasyn.synergy.activity import (
    PROMPT_COLUMNS,
    PROMPT_ID_PATTERN,
    lazy_head_activity,
    load_activity,
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
    synergy_redundancy_correlation,
    top_edge_graph,
)

__all__ = [
    "PROMPT_COLUMNS",
    "PROMPT_ID_PATTERN",
    "ablation_curves",
    "ablation_fractions",
    "ablation_orders",
    "degenerate_heads",
    "head_scores",
    "heads_per_layer",
    "layer_profile",
    "lazy_head_activity",
    "load_activity",
    "nanmean",
    "network_measures",
    "phiid_matrices",
    "prompt_token_ids",
    "prompts_to_record",
    "removal_mask",
    "select_prompts",
    "synergy_redundancy_correlation",
    "top_edge_graph",
]
