"""Confidence elicitation that always yields a number: forced digits and P(True) (metasyn.lm.elicitation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from metasyn.lm.elicitation import (
    DIGITS,
    digit_token_ids,
    forced_confidence,
    get_elicitation,
    next_token_ids,
    p_true_confidence,
)
from metasyn.lm.models import LanguageModel, locate_model
from metasyn.lm.prompts import (
    P_TRUE_CUE,
    confidence_completion,
    confidence_cue,
    confidence_messages,
    p_true_messages,
    render_prompts,
)
from tests.conftest import EMBEDDED_SPEC, tiny_llama_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = [
    {"domain": "arithmetic", "question": "What is 2 plus 3?", "choices": []},
    {"domain": "multiple_choice", "question": "Capital of France?", "choices": ["Rome", "Paris", "Lyon"]},
    {"domain": "triviaqa", "question": "Who wrote the novel that begins with 'Call me Ishmael'?", "choices": []},
]
ANSWERS = ["5", "B", "Herman Melville"]


@pytest.fixture(scope="module")
def saved_tokenizer():
    """The embedded model's tokenizer as saved (right padding), not as load_model sets it up."""
    tokenizer = AutoTokenizer.from_pretrained(locate_model(EMBEDDED_SPEC))
    tokenizer.pad_token = tokenizer.eos_token
    assert tokenizer.padding_side == "right"
    return tokenizer


def known_logits_lm(tokenizer, logits: dict[str, float]) -> LanguageModel:
    """A tiny Llama whose next-token logits after any real token are ``logits`` by token, 0 for all others."""
    config = tiny_llama_config(len(tokenizer), tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        # Zeroed output projections leave the residual stream as the last token's embedding.
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        # Real tokens embed as ones, which the final norm keeps; a pad would negate every logit, so reading a
        # pad position instead of the last real token shows.
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.embed_tokens.weight[tokenizer.pad_token_id] = -1.0
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        for token, logit in logits.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = logit / config.hidden_size
    return LanguageModel(model, tokenizer)


def reading(logits: dict[str, float], tokens: str, vocab_size: int) -> tuple[np.ndarray, float]:
    """The expected renormalised probabilities of ``tokens`` and their mass, every other logit being 0."""
    weights = np.exp([logits.get(token, 0.0) for token in tokens])
    return weights / weights.sum(), weights.sum() / (weights.sum() + vocab_size - len(tokens))


@pytest.mark.parametrize(
    "digit_logits",
    [{"7": 5.0, "8": 4.0}, {"0": 2.0, "9": 2.0}, {}],
    ids=["spread", "split_0_and_9", "flat"],
)
def test_forced_confidence_is_the_expected_tenths_midpoint(saved_tokenizer, digit_logits):
    lm = known_logits_lm(saved_tokenizer, digit_logits)
    result = forced_confidence(lm, QUESTIONS, ANSWERS, batch_size=2)
    probabilities, mass = reading(digit_logits, DIGITS, len(saved_tokenizer))
    expected = float(probabilities @ [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
    np.testing.assert_allclose(result.confidence, [expected] * len(QUESTIONS), rtol=1e-5)
    # The mass divides by a float32 sum over the whole vocabulary.
    np.testing.assert_allclose(result.mass, [mass] * len(QUESTIONS), rtol=1e-4)


def test_forced_confidence_of_a_model_certain_of_one_digit_is_that_digits_midpoint(saved_tokenizer):
    result = forced_confidence(known_logits_lm(saved_tokenizer, {"3": 40.0}), QUESTIONS[:1], ANSWERS[:1])
    assert result.confidence[0] == pytest.approx(0.35, abs=1e-6)
    assert result.mass[0] == pytest.approx(1.0, abs=1e-6)


def test_p_true_is_the_sigmoid_of_the_option_logit_difference(saved_tokenizer):
    option_logits = {"1": 2.0, "2": -1.0}
    lm = known_logits_lm(saved_tokenizer, option_logits | {"7": 9.0})  # a digit that is no option is ignored
    result = p_true_confidence(lm, QUESTIONS, ANSWERS, batch_size=2)
    np.testing.assert_allclose(result.confidence, [1 / (1 + np.exp(-3.0))] * len(QUESTIONS), rtol=1e-5)
    weights = np.exp([2.0, -1.0])
    mass = weights.sum() / (weights.sum() + np.exp(9.0) + len(saved_tokenizer) - 3)
    np.testing.assert_allclose(result.mass, [mass] * len(QUESTIONS), rtol=1e-4)


@pytest.mark.parametrize("elicit", [forced_confidence, p_true_confidence])
def test_batches_give_what_one_question_at_a_time_gives(saved_tokenizer, elicit):
    torch.manual_seed(0)
    lm = LanguageModel(LlamaForCausalLM(tiny_llama_config(len(saved_tokenizer))).eval(), saved_tokenizer)
    alone = [elicit(lm, [question], [answer], batch_size=1) for question, answer in zip(QUESTIONS, ANSWERS)]
    for batch_size in (2, len(QUESTIONS)):
        batched = elicit(lm, QUESTIONS, ANSWERS, batch_size=batch_size)
        for field in ("confidence", "mass"):
            np.testing.assert_allclose(getattr(batched, field), [getattr(row, field)[0] for row in alone], atol=1e-6)
    # The questions differ, so reading a pad or a wrong row would show.
    assert np.ptp([row.confidence[0] for row in alone]) > 1e-4


def test_no_questions_give_empty_arrays(saved_tokenizer):
    result = forced_confidence(known_logits_lm(saved_tokenizer, {}), [], [])
    assert result.confidence.shape == result.mass.shape == (0,)


def test_smollm2_reads_the_digit_it_was_trained_to_write(embedded_lm):
    tokenizer = embedded_lm.tokenizer
    ids = digit_token_ids(tokenizer, confidence_cue(""))
    assert tokenizer.convert_ids_to_tokens(ids) == list(DIGITS)
    assert ids == list(range(32, 42))  # the ids that the module docstring names
    prompt = render_prompts(tokenizer, [confidence_messages(QUESTIONS[1])])[0]
    cued = tokenizer.encode(prompt + confidence_cue("B"), add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(cued[-3:]) == ["Ġ", "0", "."]
    trained = tokenizer.encode(prompt + confidence_completion("B", 0.73), add_special_tokens=False)
    assert trained == [*cued, ids[7], ids[3]]


def test_smollm2_reads_the_p_true_option_digits(embedded_lm):
    tokenizer = embedded_lm.tokenizer
    assert next_token_ids(tokenizer, P_TRUE_CUE, ["1", "2"]) == [33, 34]
    prompt = render_prompts(tokenizer, [p_true_messages(QUESTIONS[1], "B")])[0] + P_TRUE_CUE
    cued = tokenizer.encode(prompt, add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(cued[-1:]) == ["Ġ("]
    assert tokenizer.encode(prompt + "1)", add_special_tokens=False)[: len(cued) + 1] == [*cued, 33]


def test_smollm2_puts_its_mass_on_the_labels_that_are_read(embedded_lm):
    forced = forced_confidence(embedded_lm, QUESTIONS, ANSWERS)
    assert (forced.mass > 0.95).all()  # 0.980-0.998 on these three questions
    assert ((forced.confidence >= 0.05) & (forced.confidence <= 0.95)).all()
    p_true = p_true_confidence(embedded_lm, QUESTIONS, ANSWERS)
    assert (p_true.mass > 0.5).all()
    assert ((p_true.confidence > 0) & (p_true.confidence < 1)).all()


def word_tokenizer(pre_tokenizer, words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` (anything else is unknown) that splits text with ``pre_tokenizer``."""
    vocab = {word: index for index, word in enumerate(["[UNK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_a_tokenizer_that_groups_digits_is_refused():
    # Like Llama 3's, which writes up to three digits as one token: "0.85" would not end in the digit read.
    tokenizer = word_tokenizer(pre_tokenizers.Whitespace(), ["Answer", "Confidence", ":", ".", *DIGITS])
    with pytest.raises(ValueError, match="groups digits.*'p_true' or 'stated'"):
        digit_token_ids(tokenizer, confidence_cue(""))


def test_a_tokenizer_that_merges_a_label_with_the_cue_is_refused():
    # Like a vocabulary holding "(1" as one piece: the label would not be a new token after the cue.
    tokenizer = word_tokenizer(pre_tokenizers.WhitespaceSplit(), ["The", "proposed", "answer", "is:", "(", "1"])
    with pytest.raises(ValueError, match="does not write '1' after .* as one new token"):
        next_token_ids(tokenizer, P_TRUE_CUE, ["1"])


def test_methods_are_registered_by_name():
    assert get_elicitation("forced") is forced_confidence and get_elicitation("p_true") is p_true_confidence
    with pytest.raises(ValueError, match=r"Unknown elicitation method 'stated'.*\['forced', 'p_true'\]"):
        get_elicitation("stated")
