"""Prompt and completion texts for sampling, the confidence task and the pairwise task.

One module so that data_prep (training targets), calibration (evaluation) and synergy (generation) all use
the same wording: a model is evaluated on exactly the format it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from transformers import PreTrainedTokenizerBase

from metasyn.questions import OPTION_LETTERS, answer_type

ANSWER_FORMATS = {
    "number": "Give the final answer as a number.",
    "letter": "Answer with the letter of the correct option.",
    "text": "Answer with a short phrase.",
}

Messages = list[dict[str, str]]


def question_block(question: Mapping) -> str:
    """The question text, with lettered options for multiple choice."""
    choices = list(question.get("choices") if question.get("choices") is not None else [])
    lines = [str(question["question"])]
    if len(choices):
        lines += [f"{OPTION_LETTERS[index]}. {choice}" for index, choice in enumerate(choices)]
    return "\n".join(lines)


def confidence_messages(question: Mapping) -> Messages:
    """Single-question task: answer, then state the probability that the answer is correct.

    data_prep samples consistency with this prompt too, so the targets describe the model in the regime in which
    it is trained and evaluated.
    """
    instruction = ANSWER_FORMATS[answer_type(question["domain"])]
    content = (
        f"{question_block(question)}\n\n{instruction} Reply with your answer, then on a new line "
        "'Confidence: <probability from 0 to 1 that your answer is correct>'."
    )
    return [{"role": "user", "content": content}]


def confidence_completion(answer: str, confidence: float) -> str:
    """Target text of the single-question task: the answer as the model words it, then the confidence line.

    No "Answer:" label: the fine-tune then learns one line, and the answer is written as the base model writes
    it. With the label, the 135M model's LoRA fine-tunes (1.25 epochs, 109 examples, demo of 2026-12-03) turned
    their factual answers into "Answer: Answer: Answer: ... 0.000000" (accuracy 0.59 to 0.14; after "Answer:"
    they put 0.2-0.4 on " Answer" even for training questions). Without it, on the same questions and settings,
    factual accuracy stayed at base's 0.57 and the confidence line was written for 78-100% of the questions.
    Opening the assistant turn with the label in the prompt instead kept the fine-tunes' answers but cost base
    its worked arithmetic (0.51 to 0.02: it wrote the number at once).
    """
    return f"{answer}\nConfidence: {confidence:.2f}"


def confidence_cue(answer: str) -> str:
    """The trained completion cut before its tenths digit: ``<answer>\nConfidence: 0.``."""
    # Cut from the target format itself, so the cue cannot drift from what the fine-tunes learnt.
    return confidence_completion(answer, 0.0).removesuffix("00")


# Kadavath et al. (2022) label the options (A) and (B). Digits are used here because a digit is a token of its own
# after "(" in both tokenizers the project uses, where a SentencePiece vocabulary may hold "(A" as one token
# (see metasyn.lm.elicitation).
P_TRUE_OPTIONS = {"True": "1", "False": "2"}
# The assistant turn starts with this text, so the model's next token is an option's label.
P_TRUE_CUE = "The proposed answer is: ("


def p_true_messages(question: Mapping, proposed_answer: str) -> Messages:
    """Kadavath et al.'s P(True) task: is the proposed answer to the question correct?"""
    options = "\n".join(f"({label}) {option}" for option, label in P_TRUE_OPTIONS.items())
    labels = " or ".join(P_TRUE_OPTIONS.values())
    content = (
        f"{question_block(question)}\n\nProposed answer: {proposed_answer}\n\nIs the proposed answer correct?\n"
        f"{options}\n\nReply in the form '{P_TRUE_CUE}<{labels}>)'."
    )
    return [{"role": "user", "content": content}]


def pairwise_messages(first: Mapping, second: Mapping) -> Messages:
    """Pairwise task: which of two questions is the model more likely to answer correctly, then both answers."""
    content = (
        "Here are two questions.\n\n"
        f"Question 1:\n{question_block(first)}\n({ANSWER_FORMATS[answer_type(first['domain'])]})\n\n"
        f"Question 2:\n{question_block(second)}\n({ANSWER_FORMATS[answer_type(second['domain'])]})\n\n"
        "Which question are you more likely to answer correctly? Reply in the form 'More confident: <1 or 2>', "
        "then 'Answer 1: <answer>' and 'Answer 2: <answer>' on new lines."
    )
    return [{"role": "user", "content": content}]


def pairwise_completion(preferred: int, first_answer: str, second_answer: str) -> str:
    """Target text of the pairwise task."""
    return f"More confident: {preferred}\nAnswer 1: {first_answer}\nAnswer 2: {second_answer}"


def assistant_message(text: str) -> Messages:
    """A completion in conversational form (what TRL's prompt/completion format expects)."""
    return [{"role": "assistant", "content": text}]


def render_prompts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages]) -> list[str]:
    """Render conversations with the model's own chat template, ready for the assistant's turn."""
    if not tokenizer.chat_template:
        raise ValueError(
            f"Tokenizer {tokenizer.name_or_path!r} has no chat template; set one (see metasyn.lm.models) "
            "before formatting prompts."
        )
    return [
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
