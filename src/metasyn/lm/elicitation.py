"""Confidence elicitation that yields a number for every question and model: ``forced`` and ``p_true``.

Both methods append a cue to the model's own chat-rendered prompt, run one forward pass per question, and
read the next-token distribution over a few label tokens. They also return that distribution's *mass*: the
probability the label tokens had together before renormalising. Low mass means that the model did not expect a
label there, so the confidence says little about what the model would have written.

``forced``: the confidence prompt (``prompts.confidence_messages``), then the assistant turn
``<answer>\\nConfidence: 0.`` (``prompts.confidence_cue``: the trained completion cut before its tenths
digit). The ten digit tokens ``"0"``..``"9"`` are read. Renormalised over them, they give
``confidence = sum_d p_d * (d + 0.5) / 10``:

- The cue ends in ``0.`` so the next token is a single bare digit in both tokenizers, with no space in front.
  A cue that ends in ``Confidence:`` would make the next token depend on how each tokenizer writes a space
  before a number.
- The tenths digit stands for the interval ``[d/10, (d+1)/10)``, and its midpoint is the value it reports.
  Reading ``d/10`` would bias every confidence down by 0.05. The range is [0.05, 0.95].
- One digit costs one forward pass. The second digit would need a pass per first digit, and for a model sure
  of its tenths digit it would not move the question between the ten equal-width ECE bins. A model that
  would write ``1.00`` is held below 1 by the cue, and it lands in the top bin, where 1.0 falls anyway.

For SmolLM2 (ChatML, GPT-2-style byte-level BPE whose vocabulary keeps every digit a token of its own),
``Confidence: 0.85`` is the tokens ``Conf|idence|:|Ġ|0|.|8|5``. The cue therefore ends ``Ġ|0|.``, and ids
32..41 (``"0"``..``"9"``) are read.

For Gemma 3, the tokenizer is SentencePiece with split digits (Gemma 3 technical report: "split digits,
preserved whitespace, and byte-level encodings"). No piece holds a digit together with another
character. ``0.`` is therefore ``0|.``, the ``.`` cannot merge with the digit after it, and that digit is one
of the ten pieces ``"0"``..``"9"`` (without ``▁``, since the cue puts no space before it). The Gemma tokenizer
is not available offline, so this is not tested here. Instead ``digit_token_ids`` checks every tokenizer it is
given. It refuses, with a clear error, a tokenizer where a digit after the cue is not one new token, or where
a run of digits is not one token per digit (Llama 3 groups up to three digits per token).

``p_true`` (Kadavath et al. 2022, "Language Models (Mostly) Know What They Know"): a user turn with the question
(``prompts.question_block``), ``Proposed answer: <answer>``, ``Is the proposed answer correct?`` and the
options ``(1) True`` and ``(2) False``. The assistant turn is ``The proposed answer is: (``. Confidence is
P("1") / (P("1") + P("2")), which is sigmoid(logit_1 - logit_2). The options are digits rather than the
paper's letters. In both tokenizers a digit after ``(`` is a new single token, for the same reasons as above
(SmolLM2 ids 33 and 34). A SentencePiece vocabulary may hold ``(A`` as one piece, and ``next_token_ids``
would refuse that. A proposed answer that is itself 1 or 2 may pull the model towards that label, as a letter
answer would with the paper's letters; digits clash with far fewer answers than letters do.

What a pipeline node passes in: the variant's ``LanguageModel`` (in eval mode, as ``load_model`` leaves it, so
the result is deterministic); the test questions as records of the question schema (``domain``, ``question``,
``choices``); and for each question the answer text that is scored for correctness. That text is the answer read
off the model's greedy ``stated`` output (``answers.score_answer``), so the confidence is about the answer that
is graded. Where no answer could be read, pass the output's first line, so that the question still gets a
confidence. The results line up with the questions. ``pd.DataFrame(result._asdict())`` gives the columns
``confidence`` and ``mass``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from metasyn.lm.generation import encode_left_padded, left_padded_position_ids
from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import (
    P_TRUE_CUE,
    P_TRUE_OPTIONS,
    confidence_cue,
    confidence_messages,
    p_true_messages,
    render_prompts,
)

DIGITS = "0123456789"
# The value each tenths digit reports: the midpoint of its interval [d/10, (d+1)/10).
TENTHS_MIDPOINTS = (np.arange(len(DIGITS)) + 0.5) / len(DIGITS)


class Elicited(NamedTuple):
    """Per question: the confidence in [0, 1], and the mass that its label tokens had before renormalising."""

    confidence: np.ndarray
    mass: np.ndarray


def next_token_ids(tokenizer: PreTrainedTokenizerBase, context: str, continuations: Sequence[str]) -> list[int]:
    """The token id of each continuation written right after ``context``; a ValueError where it is not one token."""
    before = tokenizer.encode(context, add_special_tokens=False)
    ids = []
    for continuation in continuations:
        after = tokenizer.encode(context + continuation, add_special_tokens=False)
        if len(after) != len(before) + 1 or after[: len(before)] != before:
            raise ValueError(
                f"Tokenizer {tokenizer.name_or_path!r} does not write {continuation!r} after {context[-16:]!r} as "
                f"one new token (the text ends in tokens {tokenizer.convert_ids_to_tokens(after[-3:])}), so its "
                "probability cannot be read off one next-token distribution. Elicit this model's confidence with "
                "the 'stated' method, or give metasyn.lm.elicitation a cue that ends where this tokenizer splits."
            )
        ids.append(after[-1])
    return ids


def digit_token_ids(tokenizer: PreTrainedTokenizerBase, context: str) -> list[int]:
    """Ids of the tokens "0".."9" after ``context``; a ValueError if the tokenizer does not keep digits single."""
    ids = next_token_ids(tokenizer, context, DIGITS)
    # A tokenizer that groups digits ("85" as one token) would put a written "0.85" on tokens that are not read.
    run = tokenizer.encode(context + DIGITS, add_special_tokens=False)
    if run[-len(DIGITS) :] != ids:
        raise ValueError(
            f"Tokenizer {tokenizer.name_or_path!r} groups digits (it writes {DIGITS!r} as tokens "
            f"{tokenizer.convert_ids_to_tokens(run[-len(DIGITS) :])}), so the 'forced' method, which reads one "
            "digit token, does not apply. Use the 'p_true' or 'stated' method for this model."
        )
    return ids


@torch.inference_mode()
def next_token_probabilities(
    lm: LanguageModel, texts: Sequence[str], token_ids: Sequence[int], batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Per text, ``(n, len(token_ids))`` next-token probabilities renormalised over ``token_ids``, and ``(n,)`` mass."""
    model, tokenizer = lm
    # Starts with an empty block, so that no texts give empty arrays.
    log_probs = [torch.empty(0, len(token_ids), dtype=torch.float64)]
    for start in range(0, len(texts), batch_size):
        encoded = encode_left_padded(tokenizer, texts[start : start + batch_size], model.device)
        position_ids = left_padded_position_ids(encoded["attention_mask"])
        logits = model(**encoded, position_ids=position_ids, logits_to_keep=1).logits[:, -1].float()
        log_probs.append(logits.log_softmax(-1)[:, list(token_ids)].double().cpu())
    selected = torch.cat(log_probs)
    return selected.softmax(-1).numpy(), selected.logsumexp(-1).exp().numpy()


def forced_confidence(
    lm: LanguageModel, questions: Sequence[Mapping], answers: Sequence[str], batch_size: int = 8
) -> Elicited:
    """The expected tenths digit that the model would write after its own answer in the trained format."""
    prompts = render_prompts(lm.tokenizer, [confidence_messages(question) for question in questions])
    texts = [prompt + confidence_cue(answer) for prompt, answer in zip(prompts, answers, strict=True)]
    # Only the cue's last characters decide how its end splits into tokens, so the answer does not matter here.
    digits = digit_token_ids(lm.tokenizer, confidence_cue(""))
    probabilities, mass = next_token_probabilities(lm, texts, digits, batch_size)
    return Elicited(probabilities @ TENTHS_MIDPOINTS, mass)


def p_true_confidence(
    lm: LanguageModel, questions: Sequence[Mapping], answers: Sequence[str], batch_size: int = 8
) -> Elicited:
    """P(True) that the model's own answer is correct, normalised over the True and False option labels."""
    conversations = [p_true_messages(question, answer) for question, answer in zip(questions, answers, strict=True)]
    texts = [prompt + P_TRUE_CUE for prompt in render_prompts(lm.tokenizer, conversations)]
    labels = next_token_ids(lm.tokenizer, P_TRUE_CUE, [P_TRUE_OPTIONS["True"], P_TRUE_OPTIONS["False"]])
    probabilities, mass = next_token_probabilities(lm, texts, labels, batch_size)
    return Elicited(probabilities[:, 0], mass)


Elicitation = Callable[[LanguageModel, Sequence[Mapping], Sequence[str], int], Elicited]

ELICITATION_METHODS: dict[str, Elicitation] = {"forced": forced_confidence, "p_true": p_true_confidence}


def get_elicitation(name: str) -> Elicitation:
    """The elicitation method registered under ``name``."""
    if name not in ELICITATION_METHODS:
        raise ValueError(f"Unknown elicitation method {name!r}; registered methods: {sorted(ELICITATION_METHODS)}.")
    return ELICITATION_METHODS[name]
