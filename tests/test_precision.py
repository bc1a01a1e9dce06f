"""bfloat16 inference (metasyn.lm.precision): when it is chosen, and how far it moves what the project measures.

The tolerances are the ones this project accepts for running generation, elicitation and ablation in bfloat16 on
the embedded model (measured values at the time of writing in each test's comment). Each test also checks that
its measure is not blind: a model that does differ (an untrained one) lies far outside the tolerance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metasyn.lm import precision
from metasyn.lm.elicitation import forced_confidence, p_true_confidence
from metasyn.lm.generation import generate
from metasyn.lm.models import LanguageModel, load_model
from metasyn.lm.prompts import confidence_messages, render_prompts
from metasyn.questions.generated import arithmetic_questions, factual_questions, multiple_choice_questions
from metasyn.synergy.ablation import ablation_divergences
from metasyn.synergy.heads import head_layout, record_head_activity, step_log_probs, teacher_forced_batch
from tests.conftest import EMBEDDED_SPEC, PROJECT_ROOT

SYNERGY_PROMPTS = PROJECT_ROOT / "src" / "metasyn" / "resources" / "synergy_prompts.csv"


def _stand_in(dtype: torch.dtype = torch.float32) -> LanguageModel:
    return LanguageModel(torch.nn.Linear(2, 2).to(dtype), tokenizer=None)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (frozenset({"avx512f", "amx_bf16"}), torch.bfloat16),
        (frozenset({"avx512f", "avx512_bf16"}), torch.bfloat16),
        (frozenset({"avx512f", "avx2"}), torch.float32),  # emulated bfloat16 is slower than float32
        (frozenset(), torch.float32),
    ],
)
def test_auto_is_bfloat16_only_on_a_cpu_that_computes_it(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(precision, "_cpu_flags", lambda: flags)
    assert precision.resolve_inference_dtype("auto", _stand_in()) == expected
    # A named dtype is taken as it is, whatever the hardware.
    assert precision.resolve_inference_dtype("float32", _stand_in(torch.bfloat16)) == torch.float32
    assert precision.resolve_inference_dtype("bfloat16", _stand_in()) == torch.bfloat16


def test_computing_in_copies_so_the_callers_weights_are_not_rounded() -> None:
    lm = _stand_in()
    with torch.no_grad():
        lm.model.weight.copy_(torch.tensor([[1 + 2**-20, 0.0], [0.0, 1.0]]))  # not representable in bfloat16
    assert precision.computing_in(lm, "float32") is lm
    cast = precision.computing_in(lm, "bfloat16")
    assert cast.model.weight.dtype == torch.bfloat16 and cast.tokenizer is lm.tokenizer
    assert lm.model.weight.dtype == torch.float32 and lm.model.weight[0, 0].item() == 1 + 2**-20
    with pytest.raises(ValueError, match="Unknown dtype 'bfloat17'"):
        precision.computing_in(lm, "bfloat17")


@pytest.fixture(scope="module")
def models(embedded_lm) -> dict[str, LanguageModel]:
    return {
        "float32": embedded_lm,
        "bfloat16": precision.computing_in(embedded_lm, "bfloat16"),
        "untrained": load_model(EMBEDDED_SPEC, device="cpu", dtype="float32", random_init=True),
    }


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    parts = [arithmetic_questions(4, seed=0), factual_questions(4), multiple_choice_questions(4, seed=0)]
    return pd.concat(parts, ignore_index=True).to_dict("records")


def test_bfloat16_next_token_distributions_stay_within_tolerance(models, questions) -> None:
    """On the float32 model's own greedy answers: total variation of each next-token distribution.

    Measured: mean 0.016, 95th percentile 0.037, largest 0.071 (18 questions x 24 steps); untrained model 0.98.
    """
    lm = models["float32"]
    prompts = render_prompts(lm.tokenizer, [confidence_messages(question) for question in questions])
    steps = 16
    greedy = generate(lm, prompts, steps, batch_size=len(prompts), suppress_eos=True)
    batch = teacher_forced_batch(greedy.prompt_ids, greedy.completion_ids, lm.tokenizer.pad_token_id)
    reference = step_log_probs(lm.model, batch, steps).exp()

    def total_variation(name: str) -> torch.Tensor:
        return 0.5 * (step_log_probs(models[name].model, batch, steps).exp() - reference).abs().sum(-1)

    bfloat16 = total_variation("bfloat16")
    assert bfloat16.mean() < 0.03 and bfloat16.max() < 0.15
    assert total_variation("untrained").mean() > 0.5


@pytest.mark.parametrize("elicit", [forced_confidence, p_true_confidence])
def test_bfloat16_elicited_confidences_stay_within_tolerance(models, questions, elicit) -> None:
    """Measured on these 12 questions: largest change 0.017 (forced) and 0.056 (p_true), mean 0.007 and 0.029,
    where the float32 confidences spread with SD 0.065 and 0.136."""
    answers = [str(question["answer"]) for question in questions]
    confidence = {name: elicit(models[name], questions, answers, 12).confidence for name in models}
    assert np.abs(confidence["bfloat16"] - confidence["float32"]).max() < 0.08
    assert np.abs(confidence["bfloat16"] - confidence["float32"]).mean() < 0.04
    assert np.abs(confidence["untrained"] - confidence["float32"]).max() > 0.1


@pytest.fixture(scope="module")
def synergy_prompts(models) -> list[str]:
    table = pd.read_csv(SYNERGY_PROMPTS).groupby("category").head(1)
    return render_prompts(
        models["float32"].tokenizer, [[{"role": "user", "content": text}] for text in table["prompt"]]
    )


def test_bfloat16_trajectories_are_float32_greedy_choices_almost_everywhere(models, synergy_prompts) -> None:
    """Head norms are recorded in float32 on tokens generated in bfloat16: those tokens must be (nearly always)
    what float32 would choose at that point. Measured: 97.6% of 12 prompts x 100 steps."""
    steps = 40
    lm = models["float32"]
    activity = record_head_activity(lm, synergy_prompts, steps, len(synergy_prompts), generator=models["bfloat16"])
    tokens = torch.stack([record.completion_token_ids for record in activity])
    batch = teacher_forced_batch(
        [record.prompt_token_ids for record in activity], list(tokens), lm.tokenizer.pad_token_id
    )
    for name, least in (("float32", 0.95), ("untrained", None)):
        agreement = (step_log_probs(models[name].model, batch, steps).argmax(-1) == tokens).float().mean().item()
        assert agreement > least if least else agreement < 0.2
    # The norms are the float32 model's own on those tokens, whichever model generated them.
    assert activity[0].head_output_norms.dtype == torch.float32


def test_bfloat16_ablation_divergences_stay_within_tolerance(models, synergy_prompts) -> None:
    """Measured: prompt-mean divergence within 1.7% of float32 at every fraction, each prompt's within 7%."""
    lm = models["float32"]
    activity = record_head_activity(lm, synergy_prompts, 24, len(synergy_prompts))
    rng = np.random.default_rng(0)
    layout = head_layout(lm.model)
    heads = layout.layers * layout.heads
    settings = {
        "activity": activity,
        "prompt_ids": [f"p{index}" for index in range(len(activity))],
        "orders": {"random": [rng.permutation(heads)]},
        "fractions": [0.1, 0.5],
        "batch_size": 12,
        "pad_token_id": lm.tokenizer.pad_token_id,
    }
    float32 = ablation_divergences(lm.model, **settings)["divergence"].to_numpy()
    bfloat16 = ablation_divergences(models["bfloat16"].model, **settings)["divergence"].to_numpy()
    relative = np.abs(bfloat16 - float32) / float32
    assert relative.max() < 0.15 and relative.mean() < 0.05
    assert float32.min() > 0.05  # the heads removed do change the output: the ratio is not of noise
