"""Sampling from a prompt cache shared by a prompt's samples gives what the model's own expansion gives."""

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from metasyn.lm.generation import encode_left_padded, generate, stop_token_ids
from metasyn.lm.models import LanguageModel
from tests.pipelines.finetune.tiny import tiny_llama, tiny_tokenizer

PROMPTS = ["What is 2 + 2? Answer:", "Name the capital of France in one word, please. Answer:", "Pick a colour:"]


def tiny_gemma3_with_a_short_window() -> LanguageModel:
    """Gemma 3's sliding-window layers, with a window shorter than the prompts, so the cache is cut as it grows."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        intermediate_size=128, vocab_size=len(tokenizer), sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return LanguageModel(Gemma3ForCausalLM(config).eval(), tokenizer)


def expanded_by_the_model(lm: LanguageModel, samples: int, max_new_tokens: int, seed: int) -> list[list[int]]:
    """Each sample's completion tokens, up to its first stop token, from ``model.generate``'s own expansion."""
    encoded = encode_left_padded(lm.tokenizer, PROMPTS, lm.model.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        sequences = lm.model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=None, top_k=None,
            num_return_sequences=samples, eos_token_id=stop_token_ids(lm), pad_token_id=lm.tokenizer.pad_token_id,
        )  # fmt: skip
    completions = []
    for row in sequences[:, encoded["input_ids"].shape[1] :].tolist():
        ends = [index for index, token in enumerate(row) if token in stop_token_ids(lm)]
        completions.append(row[: ends[0]] if ends else row)
    return completions


@pytest.mark.parametrize("make_lm", [tiny_llama, tiny_gemma3_with_a_short_window], ids=["llama", "gemma3"])
def test_samples_from_the_shared_prompt_cache_equal_the_models_own_expansion(make_lm):
    lm = make_lm()
    shared = generate(lm, PROMPTS, 12, do_sample=True, num_return_sequences=5, batch_size=len(PROMPTS), seed=7)

    assert [ids.tolist() for ids in shared.completion_ids] == expanded_by_the_model(lm, 5, 12, seed=7)
    assert len({tuple(ids.tolist()) for ids in shared.completion_ids}) > len(PROMPTS)  # sampled, not repeated
    # Prompt-major: the five samples of a prompt carry its own tokens, without the padding.
    assert [ids.tolist() for ids in shared.prompt_ids] == [
        lm.tokenizer(prompt, add_special_tokens=False).input_ids for prompt in PROMPTS for _ in range(5)
    ]
