"""Internal versus stated confidence: how much a model's residual stream knows about its own correctness.

A model may carry information about whether its answer is right without saying so in the confidence it
states. We read the residual stream at chosen layers while the model reads its own greedy answer (teacher
forced), at the last prompt token (before it answers) and averaged over the answer's tokens, and fit a
cross-validated logistic-regression probe per layer that predicts correctness from those activations. The
probe's out-of-fold AUROC is what the activations know; the AUROC of the stated (or forced) confidence is
what the model says. Their gap, before and after fine-tuning, asks whether the model knows more than it
says and whether training it to state calibrated confidence closes the gap.

Layer ``i`` is the residual stream *after* decoder block ``i``: ``hidden_states[i + 1]`` in Hugging Face's
``output_hidden_states`` convention, where ``hidden_states[0]`` is the embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from metasyn.lm.generation import left_padded_position_ids
from metasyn.lm.models import LanguageModel
from metasyn.metacognition.calibration import Estimate, auroc, auroc_undefined_reason, estimate_with_intervals

LAYERS_PARAMETER = "calibration.probes.layers"
FOLDS_PARAMETER = "calibration.probes.n_folds"
# Fixed rather than tuned: nothing about the probe is chosen on the questions it is scored on, and every
# layer and model gets the same probe, so their AUROCs differ only through the activations.
PROBE_C = 1.0
LAYER_COLUMNS = ["layer", "auroc", "ci_low", "ci_high", "n", "note"]
# The token positions read: the last prompt token (before the model answers) and the mean over its answer.
POSITIONS = ("last_prompt", "answer_mean")


def probe_layers(spec: Sequence[int] | Mapping[str, int], n_layers: int) -> list[int]:
    """The decoder layers to probe, ascending, from a list of indices or ``{"every": k}``.

    ``{"every": k}`` means layers ``0, k, 2k, ...`` and always the last layer ``n_layers - 1``. Layer ``i`` is
    the residual stream after decoder block ``i`` (``hidden_states[i + 1]``; ``hidden_states[0]`` is the
    embeddings, which no spec selects).
    """
    accepted = f'a list of distinct layer indices in 0..{n_layers - 1}, or {{"every": k}} with k >= 1'
    if isinstance(spec, Mapping):
        every = spec.get("every")
        if set(spec) != {"every"} or isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{LAYERS_PARAMETER}: got {dict(spec)!r}; expected {accepted}.")
        return sorted(set(range(0, n_layers, every)) | {n_layers - 1})
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise ValueError(f"{LAYERS_PARAMETER}: got {spec!r}; expected {accepted}.")
    not_indices = [x for x in spec if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n_layers]
    if not_indices:
        raise ValueError(f"{LAYERS_PARAMETER}: {not_indices} are not layer indices of this model; expected {accepted}.")
    repeated = sorted({x for x in spec if list(spec).count(x) > 1})
    if repeated:
        raise ValueError(f"{LAYERS_PARAMETER}: layers {repeated} are listed more than once; expected {accepted}.")
    return sorted(spec)


@torch.inference_mode()
def residual_activations(
    lm: LanguageModel,
    prompts: Sequence[str],
    completions: Sequence[str],
    layers: Sequence[int],
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Residual-stream activations at ``layers`` as the model reads each rendered prompt and its own completion.

    Returns float32 arrays ``last_prompt`` and ``answer_mean``, each ``(n, len(layers), hidden)``: the
    residual at the last prompt token, and its mean over the completion's tokens (the last prompt token's
    where the completion is empty, flagged in the boolean ``empty_completion``); and ``layers``.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions: one completion per prompt.")
    model, tokenizer = lm
    layers = list(layers)
    probe_layers(layers, model.config.get_text_config().num_hidden_layers)
    # Tokenised apart and joined as ids, so that the prompt ends at a known token: tokenising the joined
    # text (as encode_left_padded would) could merge a token across the boundary. The chat template has
    # already written the special tokens into the prompts.
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    last_prompt, answer_mean = [], []
    for start in range(0, len(prompts), batch_size):
        batch = slice(start, start + batch_size)
        rows = [p + c for p, c in zip(prompt_ids[batch], completion_ids[batch])]
        encoded = tokenizer.pad({"input_ids": rows}, padding_side="left", return_tensors="pt").to(model.device)
        mask = encoded["attention_mask"]
        hidden = model(**encoded, position_ids=left_padded_position_ids(mask), output_hidden_states=True).hidden_states
        # Left padding puts every completion at the end of its row, so positions count back from the width.
        width = mask.shape[1]
        answer_lengths = torch.tensor([len(c) for c in completion_ids[batch]], device=model.device)
        prompt_end = width - answer_lengths - 1
        in_answer = (torch.arange(width, device=model.device) > prompt_end[:, None]).float()
        at_layers_last, at_layers_mean = [], []
        for layer in layers:
            states = hidden[layer + 1].float()
            last = states[torch.arange(len(rows), device=model.device), prompt_end]
            mean = torch.einsum("bwh,bw->bh", states, in_answer) / answer_lengths.clamp(min=1)[:, None]
            at_layers_last.append(last)
            at_layers_mean.append(torch.where(answer_lengths[:, None] > 0, mean, last))
        last_prompt.append(torch.stack(at_layers_last, dim=1).cpu())
        answer_mean.append(torch.stack(at_layers_mean, dim=1).cpu())
    return {
        "last_prompt": torch.cat(last_prompt).numpy(),
        "answer_mean": torch.cat(answer_mean).numpy(),
        "empty_completion": np.array([len(c) == 0 for c in completion_ids]),
        "layers": np.array(layers),
    }


def probe_auroc(features: np.ndarray, correct: np.ndarray, n_folds: int, seed: int) -> dict:
    """Out-of-fold AUROC of a logistic-regression probe predicting correctness from ``(n, d)`` features.

    Each fold's probe is standardised and fitted on the other folds only (``StratifiedKFold``, shuffled with
    ``seed``), so every question's score (``scores``, its predicted probability of being correct) comes from
    a probe that never saw it. Undefined (NaN, with ``note``) when a class has fewer than ``n_folds`` members.
    """
    features, correct = np.asarray(features, dtype=float), np.asarray(correct, dtype=bool)
    if features.ndim != 2 or len(features) != len(correct):
        raise ValueError(f"features must be (n, d) with one row per answer; got {features.shape}, {len(correct)}.")
    n, n_correct = len(correct), int(correct.sum())
    result = {"auroc": float("nan"), "n": n, "n_correct": n_correct, "scores": np.full(n, np.nan)}
    smaller_class = min(n_correct, n - n_correct)
    if smaller_class < n_folds:
        reason = auroc_undefined_reason(correct) or f"{n_correct} of {n} answers correct"
        return result | {
            "note": f"{reason}: a {n_folds}-fold probe needs at least {n_folds} of each class ({FOLDS_PARAMETER})"
        }
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=1000))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(probe, features, correct, cv=folds, method="predict_proba")[:, 1]
    return result | {"auroc": auroc(scores, correct), "scores": scores, "note": ""}


def probe_auroc_by_layer(
    activations: np.ndarray,
    correct: np.ndarray,
    layers: list[int],
    n_folds: int,
    seed: int,
    n_resamples: int,
    confidence_level: float,
) -> pd.DataFrame:
    """One row per layer: the probe's out-of-fold AUROC on ``(n, layers, hidden)`` activations, with an interval.

    The interval is a percentile bootstrap over questions of the AUROC of the fixed out-of-fold scores
    (``estimate_with_intervals``: the same seed draws the same questions as the stated-confidence intervals).
    It ignores the variability of refitting the probe on each resample, so it is a lower bound on the true
    uncertainty.
    """
    correct = np.asarray(correct, dtype=bool)
    if activations.ndim != 3 or activations.shape[1] != len(layers):
        raise ValueError(f"activations must be (n, {len(layers)} layers, hidden); got {activations.shape}.")
    rows = []
    for position, layer in enumerate(layers):
        probe = probe_auroc(activations[:, position], correct, n_folds, seed)
        row = {"layer": layer, "auroc": probe["auroc"], "ci_low": np.nan, "ci_high": np.nan}
        if not probe["note"]:
            scores = probe["scores"]

            def resampled_auroc(items: np.ndarray, scores: np.ndarray = scores) -> dict[str, Estimate]:
                return {"auroc": Estimate(auroc(scores[items], correct[items]), len(items))}

            interval = estimate_with_intervals(
                resampled_auroc,
                len(correct),
                n_resamples=n_resamples,
                confidence_level=confidence_level,
                seed=seed,
            ).iloc[0]
            row |= {"ci_low": interval["ci_low"], "ci_high": interval["ci_high"]}
        rows.append(row | {"n": probe["n"], "note": probe["note"]})
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def probe_table(
    activations: Mapping[str, np.ndarray], layers: list[int], correct: np.ndarray, n_folds: int, bootstrap: Mapping
) -> pd.DataFrame:
    """``probe_auroc_by_layer`` for each token position (``position`` column first), with one bootstrap setting."""
    return pd.concat(
        [
            probe_auroc_by_layer(
                activations[position],
                correct,
                layers,
                n_folds,
                bootstrap["seed"],
                bootstrap["n_resamples"],
                bootstrap["confidence_level"],
            ).assign(position=position)  # fmt: skip
            for position in POSITIONS
        ],
        ignore_index=True,
    )[["position", *LAYER_COLUMNS]]
