"""Sampling: the inverse-CDF sampler draws from softmax(logits / T); decoding from a prompt cache shared by a
prompt's samples, dropping rows as they end, gives what the model's own ``generate`` gives."""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import BatchEncoding, Gemma3ForCausalLM, Gemma3TextConfig, LogitsProcessorList

from metasyn.lm.generation import InverseCdfSampler, encode_left_padded, generate, stop_token_ids
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


LOGITS = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0]))
DRAWS = 40_000


def drawn_counts(temperature: float) -> np.ndarray:
    """How often the sampler draws each of ``LOGITS``' tokens, over ``DRAWS`` rows at a fixed seed."""
    torch.manual_seed(0)
    scores = InverseCdfSampler(temperature)(torch.zeros(DRAWS, 1, dtype=torch.long), LOGITS.repeat(DRAWS, 1))
    assert torch.isfinite(scores).sum(-1).eq(1).all()  # one token left per row: greedy decoding emits it
    return np.bincount(scores.argmax(-1).numpy(), minlength=len(LOGITS))


def chi_square_p(counts: np.ndarray, logits: torch.Tensor) -> float:
    """Goodness-of-fit p-value of drawn counts against softmax(logits), over the tokens of non-zero probability."""
    probabilities = logits.double().softmax(-1).numpy()
    drawable = probabilities > 0
    expected = probabilities[drawable] / probabilities[drawable].sum() * counts[drawable].sum()
    return stats.chisquare(counts[drawable], expected).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.4, 2.0])
def test_the_sampler_draws_from_the_tempered_softmax(temperature):
    counts = drawn_counts(temperature)

    assert counts[-1] == 0  # a zero-probability token is never drawn
    assert chi_square_p(counts, LOGITS / temperature) > 0.001


def test_the_sampler_tells_temperatures_apart():
    # The same test that accepts T = 0.4 above rejects the T = 1 distribution for it.
    assert chi_square_p(drawn_counts(0.4), LOGITS) < 1e-10


def test_the_sampler_refuses_a_non_positive_temperature():
    with pytest.raises(ValueError, match="leave do_sample off"):
        InverseCdfSampler(0.0)


def expanded_by_the_model(
    lm: LanguageModel, samples: int, max_new_tokens: int, seed: int, sampled: bool = True, prompts=PROMPTS
) -> list[list[int]]:
    """Each sample's completion tokens, up to its first stop token, from ``model.generate``'s own expansion."""
    encoded = encode_left_padded(lm.tokenizer, prompts, lm.model.device)
    encoded = BatchEncoding({key: value.repeat_interleave(samples, dim=0) for key, value in encoded.items()})
    torch.manual_seed(seed)
    with torch.inference_mode():
        sequences = lm.model.generate(
            **encoded, max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList([InverseCdfSampler(1.0)] if sampled else []),
            do_sample=False, temperature=None, top_p=None, top_k=None,
            eos_token_id=stop_token_ids(lm), pad_token_id=lm.tokenizer.pad_token_id,
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


def decoded_rows(lm: LanguageModel) -> list[int]:
    """The number of rows of each single-token forward (the decoding steps) while ``lm`` generates."""
    rows = []
    lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: (
            rows.append(kwargs["input_ids"].shape[0]) if kwargs["input_ids"].shape[1] == 1 else None
        ),
        with_kwargs=True,
    )
    return rows


MORE_PROMPTS = [*PROMPTS, "Count to five:", "Spell the word cat:", "Say hello to the world:", "Two and two make"]


# The tiny Llama's greedy output repeats one token, so no stop token can end its rows in their middle.
@pytest.mark.parametrize(
    ("make_lm", "sampled"),
    [(tiny_llama, True), (tiny_gemma3_with_a_short_window, True), (tiny_gemma3_with_a_short_window, False)],
    ids=["llama-sampled", "gemma3-sampled", "gemma3-greedy"],
)
def test_rows_that_end_early_leave_the_batch_and_every_row_stays_what_generate_gives(make_lm, sampled):
    lm = make_lm()
    copies = 5 if sampled else 1
    # Stop tokens that some rows emit in their middle but none at its start, so that rows end at several steps.
    unstopped = expanded_by_the_model(lm, copies, 12, seed=3, sampled=sampled, prompts=MORE_PROMPTS)
    starts = {token for row in unstopped for token in row[:2]}
    middle = Counter(token for row in unstopped for token in row[2:8] if token not in starts)
    lm.model.generation_config.eos_token_id = [token for token, _ in middle.most_common(3)]
    expected = expanded_by_the_model(lm, copies, 12, seed=3, sampled=sampled, prompts=MORE_PROMPTS)
    rows = decoded_rows(lm)

    ours = generate(
        lm, MORE_PROMPTS, 12, do_sample=sampled, num_return_sequences=copies, batch_size=len(MORE_PROMPTS), seed=3
    )

    assert [ids.tolist() for ids in ours.completion_ids] == expected
    assert len({len(row) for row in expected}) > 2 and min(map(len, expected)) < 8  # rows ended at several steps
    batch = copies * len(MORE_PROMPTS)
    assert rows[0] == batch and rows[-1] < batch and sum(rows) < batch * len(rows)  # and left the batch


def test_a_row_stops_at_the_first_step_where_its_text_is_settled():
    lm = tiny_gemma3_with_a_short_window()
    full = generate(lm, MORE_PROMPTS, 12, do_sample=True, num_return_sequences=3, batch_size=len(MORE_PROMPTS))

    def settled(text: str) -> bool:
        return len(text) >= 4

    cut = generate(
        lm, MORE_PROMPTS, 12, do_sample=True, num_return_sequences=3, batch_size=len(MORE_PROMPTS), settled=settled
    )

    for whole, stopped in zip(full.completion_ids, cut.completion_ids, strict=True):
        steps = next(
            (k for k in range(1, len(whole) + 1) if settled(lm.tokenizer.decode(whole[:k], skip_special_tokens=True))),
            len(whole),
        )
        assert stopped.tolist() == whole[:steps].tolist()
    assert sum(map(len, cut.completion_ids)) < sum(map(len, full.completion_ids))  # and stopping did cut rows
