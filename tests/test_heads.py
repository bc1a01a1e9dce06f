"""Per-head capture and ablation on tiny random models (Llama and Gemma 3) and the embedded model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig
from transformers.models.gemma3 import modeling_gemma3
from transformers.models.llama import modeling_llama

from metasyn.lm.generation import generate
from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import render_prompts
from metasyn.synergy.heads import (
    HeadActivity,
    ablate_heads,
    head_layout,
    mean_step_divergence,
    o_proj_modules,
    record_head_activity,
    record_head_norms,
    step_log_probs,
    sum_head_outputs,
    teacher_forced_batch,
)

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
TINY_CONFIGS = {
    "llama": (LlamaConfig(**TINY, intermediate_size=128, vocab_size=128), modeling_llama),
    "gemma3": (Gemma3TextConfig(**TINY, head_dim=24, intermediate_size=128, vocab_size=128), modeling_gemma3),
}


def tiny_model(config, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def manual_head_norms(attention, hidden_states, position_embeddings, rotary) -> torch.Tensor:
    """Causal softmax attention written out per head: ``(batch, positions, heads)`` output norms."""
    batch, length, _ = hidden_states.shape
    shape = (batch, length, -1, attention.head_dim)
    query = attention.q_proj(hidden_states).view(shape).transpose(1, 2)
    key = attention.k_proj(hidden_states).view(shape).transpose(1, 2)
    value = attention.v_proj(hidden_states).view(shape).transpose(1, 2)
    if hasattr(attention, "q_norm"):  # Gemma 3 normalises queries and keys per head
        query, key = attention.q_norm(query), attention.k_norm(key)
    query, key = rotary(query, key, *position_embeddings)
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = query @ key.transpose(-1, -2) * attention.scaling
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    weights = scores.masked_fill(future, float("-inf")).softmax(-1)
    return (weights @ value).norm(dim=-1).transpose(1, 2)


@pytest.mark.parametrize("architecture", sorted(TINY_CONFIGS))
def test_captured_norms_equal_manual_attention(architecture):
    config, modeling = TINY_CONFIGS[architecture]
    model = tiny_model(config)
    inputs = {}

    def keep_inputs(layer):
        def keep(module, args, kwargs):
            inputs[layer] = (kwargs["hidden_states"], kwargs["position_embeddings"])

        return keep

    attentions = [layer.self_attn for layer in model.model.layers]
    handles = [attn.register_forward_pre_hook(keep_inputs(i), with_kwargs=True) for i, attn in enumerate(attentions)]
    tokens = torch.randint(0, config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), record_head_norms(model) as records:
        model(input_ids=tokens)
    for handle in handles:
        handle.remove()

    assert head_layout(model) == (2, 4, config.head_dim)
    for layer, attention in enumerate(attentions):
        with torch.no_grad():
            expected = manual_head_norms(attention, *inputs[layer], modeling.apply_rotary_pos_emb)
        assert records[layer][0].shape == (2, 7, 4)
        torch.testing.assert_close(records[layer][0], expected, rtol=1e-5, atol=1e-6)


def test_architecture_without_o_proj_is_a_clear_error():
    model = tiny_model(TINY_CONFIGS["llama"][0])
    for layer in model.model.layers:
        layer.self_attn.out_proj = layer.self_attn.o_proj
        del layer.self_attn.o_proj
    with pytest.raises(ValueError, match="o_proj"):
        o_proj_modules(model)


def test_teacher_forced_batch_places_steps_last():
    batch = teacher_forced_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], [torch.tensor([1, 2])] * 2, 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [0, 0, 8, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]


@pytest.fixture(scope="module")
def tiny_lm(embedded_lm):
    """A random 2-layer Llama speaking the embedded model's tokenizer (and chat template)."""
    config = LlamaConfig(**TINY, intermediate_size=128, vocab_size=len(embedded_lm.tokenizer))
    return LanguageModel(tiny_model(config), embedded_lm.tokenizer)


PROMPTS = [
    [{"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Write one sentence about the sea and the wind at night."}],
    [{"role": "user", "content": "What is two plus three?"}],
]


@pytest.mark.parametrize("lm_name", ["tiny_lm", "embedded_lm"])
def test_teacher_forced_capture_equals_generation_time_capture(lm_name, request):
    lm = request.getfixturevalue(lm_name)
    prompts = render_prompts(lm.tokenizer, PROMPTS)
    steps = 6
    with record_head_norms(lm.model, last_positions=1) as records:
        generate(lm, prompts, steps, batch_size=len(prompts), suppress_eos=True)
    # The prompt's cache (all but its last token), then one forward pass per step; each recorded its last position.
    assert all(len(layer_records) == 1 + steps for layer_records in records)
    live = torch.stack([torch.cat(layer_records[1:], dim=1) for layer_records in records], dim=1).transpose(2, 3)

    activity = record_head_activity(lm, prompts, steps, batch_size=2)

    layout = head_layout(lm.model)
    assert len(activity) == len(prompts)
    for row, prompt_activity in enumerate(activity):
        assert prompt_activity.head_output_norms.shape == (layout.layers, layout.heads, steps)
        assert len(prompt_activity.completion_token_ids) == steps
        torch.testing.assert_close(prompt_activity.head_output_norms, live[row], rtol=1e-4, atol=1e-5)


def test_head_activity_round_trips_through_tensors():
    activity = HeadActivity(torch.rand(2, 3, 4), torch.tensor([1, 2]), torch.tensor([3, 4, 5, 6]), None)
    restored = HeadActivity.from_tensors(activity.to_tensors())
    assert restored.natural_end is None
    torch.testing.assert_close(restored.head_output_norms, activity.head_output_norms)
    assert HeadActivity.from_tensors({**activity.to_tensors(), "natural_end": torch.tensor(2)}).natural_end == 2


def test_ablation_zeroes_exactly_the_removed_heads(tiny_lm):
    model = tiny_lm.model
    batch = teacher_forced_batch([torch.tensor([10, 11, 12, 13])], [torch.tensor([14, 15, 16])], 0)
    reference = step_log_probs(model, batch, 3)

    removed = torch.zeros(2, 4, dtype=torch.bool)
    with ablate_heads(model, removed):
        unchanged = step_log_probs(model, batch, 3)
    assert mean_step_divergence(reference, unchanged).tolist() == [0.0]

    removed[0, 1] = True
    with torch.no_grad(), ablate_heads(model, removed), record_head_norms(model) as records:
        ablated = step_log_probs(model, batch, 3)
    assert (records[0][0][..., 1] == 0).all()
    assert (records[0][0][..., [0, 2, 3]] > 0).all()
    assert (records[1][0] > 0).all()
    assert mean_step_divergence(reference, ablated).item() > 0
    assert not torch.allclose(reference, ablated)


def o_proj_inputs(model, batch) -> list[torch.Tensor]:
    """Every layer's ``o_proj`` input ``(rows, positions, heads, head_dim)``, as the module receives it."""
    inputs = []
    handles = [
        module.register_forward_pre_hook(lambda module, args: inputs.append(args[0].unflatten(-1, (4, 16))))
        for module in o_proj_modules(model)
    ]  # registered after any ablation hook: they see what o_proj gets
    with torch.no_grad():
        model(**batch)
    for handle in handles:
        handle.remove()
    return inputs


def test_noise_changes_only_the_removed_heads_slices_row_by_row(tiny_lm):
    model = tiny_lm.model
    batch = teacher_forced_batch(
        [torch.tensor([10, 11, 12, 13]), torch.tensor([20, 21])], [torch.tensor([14, 15])] * 2, 0
    )
    clean = o_proj_inputs(model, batch)
    # Two head sets x two prompts, head-set-major: set A removes layer 1 head 2, set B layer 1 heads 0 and 3.
    removed = torch.zeros(2, 2, 4, dtype=torch.bool)
    removed[0, 1, 2] = removed[1, 1, 0] = removed[1, 1, 3] = True
    noise = [torch.randn(2, 5, 4, 16, generator=torch.Generator().manual_seed(layer)) for layer in range(2)]
    rows = {name: tensor.repeat(2, 1) for name, tensor in batch.items()}
    with ablate_heads(model, removed.repeat_interleave(2, 0), noise):
        noisy = o_proj_inputs(model, rows)

    # Layer 0 has no removed head: untouched. In layer 1, a removed head's slice gains exactly the noise of its
    # prompt (the same draw in both head sets), every other slice is untouched. "Untouched" is up to float32
    # rounding: a batch of 4 rows may take another matmul kernel than one of 2 (seen on CI: 4e-8 apart).
    torch.testing.assert_close(noisy[0], clean[0].repeat(2, 1, 1, 1), rtol=1e-6, atol=1e-7)
    for row in range(4):
        head_set, prompt = divmod(row, 2)
        for head in range(4):
            expected = clean[1][prompt, :, head]
            if removed[head_set, 1, head]:
                expected = expected + noise[1][prompt, :, head]
            torch.testing.assert_close(noisy[1][row, :, head], expected, rtol=1e-6, atol=1e-6)


def test_per_row_zeroing_equals_one_mask_per_forward(tiny_lm):
    model = tiny_lm.model
    batch = teacher_forced_batch(
        [torch.tensor([10, 11, 12, 13]), torch.tensor([20, 21])], [torch.tensor([14, 15])] * 2, 0
    )
    masks = torch.zeros(3, 2, 4, dtype=torch.bool)
    masks[1, 0, 1] = masks[2, 1] = True  # nothing; layer 0 head 1; all of layer 1
    rows = {name: tensor.repeat(3, 1) for name, tensor in batch.items()}
    with ablate_heads(model, masks.repeat_interleave(2, 0)):
        together = step_log_probs(model, rows, 2).unflatten(0, (3, 2))
    for head_set, mask in enumerate(masks):
        with ablate_heads(model, mask):
            alone = step_log_probs(model, batch, 2)
        torch.testing.assert_close(together[head_set], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[2])


def test_summed_head_outputs_cover_the_last_positions_of_every_row(tiny_lm):
    model = tiny_lm.model
    batch = teacher_forced_batch(
        [torch.tensor([10, 11, 12, 13]), torch.tensor([20, 21])], [torch.tensor([14, 15, 16])] * 2, 0
    )
    with sum_head_outputs(model, last_positions=3) as totals, torch.no_grad():
        model(**batch)
    steps = [inputs[:, -3:].flatten(0, 1).double() for inputs in o_proj_inputs(model, batch)]
    assert int(totals["count"]) == 6
    torch.testing.assert_close(totals["sum"], torch.stack([values.sum(0) for values in steps]))
    torch.testing.assert_close(totals["sum_of_squares"], torch.stack([values.square().sum(0) for values in steps]))


def test_ablation_mask_of_wrong_shape_is_rejected(tiny_lm):
    with pytest.raises(ValueError, match="expected \\(2, 4\\)"), ablate_heads(tiny_lm.model, torch.zeros(3, 4).bool()):
        pass
