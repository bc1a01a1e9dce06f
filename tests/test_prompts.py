"""Prompt wording and chat formatting."""

import pytest

from metasyn.lm.answers import extract_answer, parse_confidence, parse_preference
from metasyn.lm.prompts import (
    P_TRUE_CUE,
    confidence_completion,
    confidence_cue,
    confidence_messages,
    p_true_messages,
    pairwise_completion,
    pairwise_messages,
    question_block,
    render_prompts,
)

QUESTION = {"domain": "multiple_choice", "question": "Capital of France?", "choices": ["Rome", "Paris"]}


def test_question_block_letters_options():
    assert question_block(QUESTION) == "Capital of France?\nA. Rome\nB. Paris"


def test_completions_parse_back_to_their_targets():
    single = confidence_completion("B", 0.734)
    assert single == "B\nConfidence: 0.73"
    assert extract_answer(single, "letter") == "B" and parse_confidence(single) == pytest.approx(0.73)
    # Worded answers, as the base model writes them: the confidence's digits are not read as the answer.
    worked = confidence_completion("37 + 13 = 50", 0.25)
    assert extract_answer(worked, "number") == "50" and parse_confidence(worked) == pytest.approx(0.25)
    sentence = confidence_completion("The capital city of Italy is Rome.", 0.5)
    assert extract_answer(sentence, "text") == "capital city of italy is rome"
    pair = pairwise_completion(2, "12", "paris")
    assert parse_preference(pair) == 2


@pytest.mark.parametrize(("confidence", "tenths"), [(0.0, "0"), (0.37, "3"), (0.99, "9")])
def test_confidence_cue_is_the_trained_completion_cut_before_its_tenths_digit(confidence, tenths):
    completion = confidence_completion("B", confidence)
    assert confidence_cue("B") == "B\nConfidence: 0."
    assert completion.startswith(confidence_cue("B")) and completion[len(confidence_cue("B"))] == tenths


def test_p_true_prompt_offers_true_and_false_under_the_cues_labels():
    content = p_true_messages(QUESTION, "B")[0]["content"]
    assert content.startswith("Capital of France?\nA. Rome\nB. Paris\n\nProposed answer: B\n")
    assert "Is the proposed answer correct?\n(1) True\n(2) False" in content
    assert f"'{P_TRUE_CUE}<1 or 2>)'" in content


def test_chat_formatting_uses_the_model_template(embedded_lm):
    rendered = render_prompts(embedded_lm.tokenizer, [confidence_messages(QUESTION)])[0]
    assert rendered.count("<|im_start|>user\n") == 1
    assert "A. Rome\nB. Paris" in rendered and "Confidence:" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    pair = render_prompts(embedded_lm.tokenizer, [pairwise_messages(QUESTION, {**QUESTION, "question": "Other?"})])[0]
    assert "Question 1:" in pair and "Question 2:\nOther?" in pair


def test_rendering_without_chat_template_is_a_clear_error(embedded_lm):
    template = embedded_lm.tokenizer.chat_template
    embedded_lm.tokenizer.chat_template = None
    try:
        with pytest.raises(ValueError, match="no chat template"):
            render_prompts(embedded_lm.tokenizer, [confidence_messages(QUESTION)])
    finally:
        embedded_lm.tokenizer.chat_template = template
