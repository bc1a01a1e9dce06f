"""Head scores, layer profile, graph measures, resume bookkeeping and ablation, on hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from metasyn import synergy
from metasyn.lm.models import LanguageModel
from metasyn.synergy import activity as synergy_activity
from metasyn.synergy.heads import (
    HeadActivity,
    ablate_heads,
    mean_step_divergence,
    step_log_probs,
    teacher_forced_batch,
)

NAN = np.nan
# 4 heads = 2 layers x 2 heads. Mean synergy per head 2, 10/3, 4, 14/3; mean redundancy 5, 11/3, 3, 7/3.
SYNERGY = np.array([[NAN, 1, 2, 3], [1, NAN, 4, 5], [2, 4, NAN, 6], [3, 5, 6, NAN]], dtype=float)
REDUNDANCY = np.array([[NAN, 6, 5, 4], [6, NAN, 3, 2], [5, 3, NAN, 1], [4, 2, 1, NAN]], dtype=float)


def test_head_scores_on_a_hand_made_matrix():
    scores = synergy.head_scores(SYNERGY, REDUNDANCY, heads_per_layer=2)
    assert scores["layer"].tolist() == [0, 0, 1, 1]
    assert scores["head"].tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(scores["synergy"], [2, 10 / 3, 4, 14 / 3])
    np.testing.assert_allclose(scores["redundancy"], [5, 11 / 3, 3, 7 / 3])
    assert scores["synergy_rank"].tolist() == [1, 2, 3, 4]
    assert scores["redundancy_rank"].tolist() == [4, 3, 2, 1]
    assert scores["syn_red_score"].tolist() == [-3, -1, 1, 3]


def test_excluded_head_gets_no_rank_and_the_others_are_ranked_among_themselves():
    synergy_matrix = SYNERGY.copy()
    synergy_matrix[3, :] = synergy_matrix[:, 3] = NAN
    scores = synergy.head_scores(synergy_matrix, REDUNDANCY, heads_per_layer=2)
    assert math.isnan(scores.loc[3, "syn_red_score"]) and math.isnan(scores.loc[3, "redundancy"])
    # Without head 3: synergy 1.5, 2.5, 3; redundancy (6+5)/2, (6+3)/2, (5+3)/2 -> ranks 3, 2, 1.
    assert scores["synergy_rank"].tolist()[:3] == [1, 2, 3]
    assert scores["redundancy_rank"].tolist()[:3] == [3, 2, 1]


def test_layer_profile_scales_scores_and_averages_per_layer():
    profile = synergy.layer_profile(synergy.head_scores(SYNERGY, REDUNDANCY, heads_per_layer=2))
    # Scores -3, -1, 1, 3 scale to 0, 1/3, 2/3, 1.
    assert profile["layer"].tolist() == [0, 1]
    assert profile["depth"].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(profile["score"], [1 / 6, 5 / 6])
    np.testing.assert_allclose(profile["score_sd"], [np.std([0, 1 / 3], ddof=1)] * 2)
    assert profile["heads"].tolist() == [2, 2]


def test_spearman_of_synergy_and_redundancy():
    correlation = synergy.synergy_redundancy_correlation(synergy.head_scores(SYNERGY, REDUNDANCY, 2))
    assert correlation["rho"] == pytest.approx(-1.0)
    assert correlation["heads"] == 4


def test_top_edge_graph_keeps_the_strongest_pairs():
    graph = synergy.top_edge_graph(SYNERGY, edge_fraction=0.5)
    assert sorted(graph.edges) == [(1, 2), (1, 3), (2, 3)]
    # A triangle and an isolated head: 3 of 6 head pairs at distance 1.
    assert synergy.network_measures(SYNERGY, 0.5, seed=0)["global_efficiency"] == pytest.approx(0.5)


def test_modularity_of_two_separate_triangles():
    matrix = np.full((6, 6), 0.1)
    for block in ([0, 1, 2], [3, 4, 5]):
        matrix[np.ix_(block, block)] = 1.0
    np.fill_diagonal(matrix, NAN)
    measures = synergy.network_measures(matrix, edge_fraction=6 / 15, seed=0)
    assert measures["edges"] == 6 and measures["communities"] == 2
    assert measures["modularity"] == pytest.approx(0.5)


def test_ablation_orders_follow_the_score():
    scores = synergy.head_scores(SYNERGY, REDUNDANCY, heads_per_layer=2)
    orders = synergy.ablation_orders(scores, random_orders=3, seed=0)
    assert orders["synergistic_first"][0].tolist() == [3, 2, 1, 0]
    assert orders["redundant_first"][0].tolist() == [0, 1, 2, 3]
    assert len(orders["random"]) == 3
    assert all(sorted(order.tolist()) == [0, 1, 2, 3] for order in orders["random"])
    again = synergy.ablation_orders(scores, random_orders=3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(orders["random"], again["random"]))


def test_ablation_fractions():
    assert synergy.ablation_fractions(0.25).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(synergy.ablation_fractions(0.05)) == 21
    for step in (0.3, 0, 1.5):
        with pytest.raises(ValueError, match="must divide 1"):
            synergy.ablation_fractions(step)


def prompt_table(ids, categories):
    return pd.DataFrame({"id": ids, "category": categories, "prompt": [f"Prompt {i}" for i in ids]})


def test_select_prompts_takes_the_first_of_each_category():
    table = prompt_table(["a1", "a2", "b1", "a3", "b2"], ["a", "a", "b", "a", "b"])
    assert synergy.select_prompts(table, 2)["id"].tolist() == ["a1", "a2", "b1", "b2"]
    assert synergy.select_prompts(table, None)["id"].tolist() == ["a1", "a2", "b1", "a3", "b2"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (prompt_table(["a", "a"], ["x", "x"]), "unique"),
        (prompt_table(["a/b"], ["x"]), "file names"),
        (prompt_table(["a"], ["x"]).drop(columns="category"), "lacks columns \\['category'\\]"),
        (prompt_table([], []), "empty"),
    ],
)
def test_select_prompts_rejects_bad_tables(table, message):
    with pytest.raises(ValueError, match=message):
        synergy.select_prompts(table, None)


def saved_tensors(prompt_tokens, steps):
    return HeadActivity(torch.ones(1, 2, steps), torch.tensor(prompt_tokens), torch.arange(steps), None).to_tensors()


def test_prompts_to_record_reuses_only_matching_saved_activity():
    saved = {"same": saved_tensors([1, 2], 4), "fewer_steps": saved_tensors([1, 2], 3), "edited": saved_tensors([9], 4)}
    ids = ["same", "fewer_steps", "edited", "new"]
    tokens = [torch.tensor([1, 2])] * 3 + [torch.tensor([5])]
    assert synergy.prompts_to_record(ids, tokens, saved, steps=4) == ["fewer_steps", "edited", "new"]


def test_lazy_head_activity_computes_each_batch_once(monkeypatch):
    calls = []

    def fake_record(lm, prompts, steps, batch_size, generator):
        assert generator is lm  # float32 asked for, and the stand-in model computes in float32 already
        calls.append(list(prompts))
        # Each prompt's "activity" is its length, so results can be traced back to their prompt.
        norms = [torch.full((1, 1, steps), float(len(prompt))) for prompt in prompts]
        return [HeadActivity(norm, torch.tensor([0]), torch.arange(steps), None) for norm in norms]

    monkeypatch.setattr(synergy_activity, "record_head_activity", fake_record)
    rendered = {"c": "ccc", "a": "a", "e": "eeeee", "b": "bb", "d": "dddd"}
    model = LanguageModel(torch.nn.Linear(1, 1), None)
    lazy = synergy.lazy_head_activity(model, rendered, steps=3, batch_size=2, generation_dtype="float32")
    assert calls == []
    results = {prompt_id: lazy[prompt_id]() for prompt_id in sorted(lazy)}
    assert calls == [["a", "bb"], ["ccc", "dddd"], ["eeeee"]]
    lengths = {prompt_id: float(tensors["head_output_norms"][0, 0, 0]) for prompt_id, tensors in results.items()}
    assert lengths == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}


def test_load_activity_rejects_missing_prompts_and_mixed_shapes():
    partitions = {"a": lambda: saved_tensors([1], 4), "b": lambda: saved_tensors([1], 5)}
    with pytest.raises(ValueError, match="No head activity saved for prompts \\['c'\\]"):
        synergy.load_activity(partitions, ["a", "c"])
    with pytest.raises(ValueError, match="mixed shapes"):
        synergy.load_activity(partitions, ["a", "b"])


def test_constant_head_is_degenerate_in_that_prompt_only():
    rng = np.random.default_rng(0)
    norms = torch.from_numpy(rng.random((2, 2, 3, 30)))  # prompts, layers, heads, steps
    norms[1, 1, 2] = 0.5  # layer 1, head 2 is constant in the second prompt
    activity = [HeadActivity(prompt_norms, torch.tensor([0]), torch.arange(30), None) for prompt_norms in norms]
    synergy_matrices, redundancy_matrices, invalid = synergy.phiid_matrices(activity, 1, "MMI", "cpu")
    degenerate = synergy.degenerate_heads(invalid, ["p0", "p1"], layers=2, heads_per_layer=3)
    assert degenerate.to_dict("records") == [
        {"prompt_id": "p1", "head_index": 5, "layer": 1, "head": 2, "reason": "constant series"}
    ]
    assert np.isnan(synergy_matrices[1, 5, :]).all() and np.isfinite(synergy_matrices[0, 5, :5]).all()
    mean = synergy.nanmean(synergy_matrices, axis=0)
    np.testing.assert_allclose(mean[5, :5], synergy_matrices[0, 5, :5])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=64)  # fmt: skip
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


PROMPT_IDS = ["p0", "p1", "p2"]


@pytest.fixture(scope="module")
def tiny_activity():
    """Three prompts of different lengths (so the batch is padded), 5 recorded steps each, for the tiny model."""
    generator = torch.Generator().manual_seed(0)
    return [
        HeadActivity(
            torch.ones(2, 4, 5),
            torch.randint(1, 64, (length,), generator=generator),
            torch.randint(1, 64, (5,), generator=generator),
            None,
        )  # fmt: skip
        for length in (3, 6, 4)
    ]


@pytest.fixture(scope="module")
def tiny_orders():
    scores = pd.DataFrame({"head_index": range(8), "syn_red_score": [3.0, -1, 2, 0, -2, 1, -3, 4]})
    return synergy.ablation_orders(scores, random_orders=2, seed=0)


@pytest.fixture(scope="module")
def tiny_noise(tiny_model, tiny_activity):
    spread = synergy.head_output_spread(tiny_model, tiny_activity, batch_size=2, pad_token_id=0)
    return synergy.NoiseAblation(spread["sd"], scale=1.0, seed=0)


def divergences(model, activity, orders, batch_size, noise=None, fractions=(0.0, 0.5, 1.0)):
    return synergy.ablation_divergences(model, activity, PROMPT_IDS, orders, fractions, batch_size, 0, noise)


def direct_divergence(model, activity, heads, noise=None) -> np.ndarray:
    """Per prompt: one forward with one mask for the whole batch, as the ablation did before head sets were batched."""
    batch = teacher_forced_batch([a.prompt_token_ids for a in activity], [a.completion_token_ids for a in activity], 0)
    layer_noise = None if noise is None else noise.for_batch(PROMPT_IDS, batch["attention_mask"], torch.float32, "cpu")
    with ablate_heads(model, synergy.removal_mask(np.asarray(heads), 2, 4), layer_noise):
        ablated = step_log_probs(model, batch, 5)
    return mean_step_divergence(step_log_probs(model, batch, 5), ablated).numpy()


def test_zero_ablation_per_prompt_equals_a_direct_ablation_of_the_same_heads(tiny_model, tiny_activity, tiny_orders):
    table = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=2)

    assert list(table.columns) == synergy.DIVERGENCE_COLUMNS
    # 4 orders (2 fixed, 2 random) x 3 fractions x 3 prompts.
    assert len(table) == 36 and table["prompt_id"].tolist()[:3] == PROMPT_IDS
    assert (table.loc[table["fraction"] == 0, "divergence"] == 0).all()
    for (order, repeat, fraction), rows in table.groupby(["order", "repeat", "fraction"]):
        heads = tiny_orders[order][repeat][: rows["heads_removed"].iloc[0]]
        assert rows["heads_removed"].iloc[0] == round(fraction * 8)
        # atol: the batched and direct forwards differ in float32 rounding (4e-8 seen on CI), which is 1e-5 of
        # these small divergences.
        np.testing.assert_allclose(
            rows["divergence"], direct_divergence(tiny_model, tiny_activity, heads), rtol=1e-5, atol=1e-7
        )
    everything = table.loc[table["fraction"] == 1, "divergence"].to_numpy().reshape(4, 3)
    assert (everything == everything[0]).all() and (everything > 0).all()


@pytest.mark.parametrize("method", ["zero", "noise"])
def test_batched_head_sets_equal_one_head_set_per_forward(tiny_model, tiny_activity, tiny_orders, tiny_noise, method):
    noise = tiny_noise if method == "noise" else None
    one_per_forward = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=3, noise=noise)
    # 3 prompts x 4 head sets per forward, and 2 prompts x 1 head set (other padding).
    for batch_size in (12, 2):
        batched = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=batch_size, noise=noise)
        pd.testing.assert_frame_equal(batched, one_per_forward, rtol=1e-5, atol=1e-7)
    assert one_per_forward["divergence"].max() > 1e-3


def test_noise_ablation_is_a_direct_noisy_forward_and_differs_from_zeroing(
    tiny_model, tiny_activity, tiny_orders, tiny_noise
):
    noisy = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=12, noise=tiny_noise)
    heads = tiny_orders["synergistic_first"][0][:4]
    half = noisy.query("order == 'synergistic_first' and fraction == 0.5")["divergence"]
    np.testing.assert_allclose(
        half, direct_divergence(tiny_model, tiny_activity, heads, tiny_noise), rtol=1e-5, atol=1e-7
    )
    zeroed = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=12)
    assert not np.allclose(noisy["divergence"], zeroed["divergence"])


def test_noise_of_scale_zero_is_no_ablation(tiny_model, tiny_activity, tiny_orders, tiny_noise):
    silent = synergy.NoiseAblation(tiny_noise.sd, scale=0.0, seed=0)
    table = divergences(tiny_model, tiny_activity, tiny_orders, batch_size=12, noise=silent)
    np.testing.assert_allclose(table["divergence"], 0.0, atol=1e-7)


def test_noise_ablation_is_reproducible_with_its_seed(tiny_model, tiny_activity, tiny_orders, tiny_noise):
    first = synergy.ablation_curves(divergences(tiny_model, tiny_activity, tiny_orders, 12, tiny_noise))
    again = synergy.ablation_curves(divergences(tiny_model, tiny_activity, tiny_orders, 12, tiny_noise))
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    reseeded = synergy.NoiseAblation(tiny_noise.sd, scale=1.0, seed=1)
    other = synergy.ablation_curves(divergences(tiny_model, tiny_activity, tiny_orders, 12, reseeded))
    assert not np.allclose(
        other.loc[other["fraction"] > 0, "divergence"], first.loc[first["fraction"] > 0, "divergence"]
    )


def test_a_prompts_noise_depends_on_its_id_and_seed_only():
    sd = torch.tensor([[[1.0, 2.0]], [[0.5, 0.0]]])  # 2 layers x 1 head x 2 dims
    noise = synergy.NoiseAblation(sd, scale=3.0, seed=5)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # "a" has 2 real positions after 2 pads, "b" 4
    layers = noise.for_batch(["a", "b"], mask, torch.float32, "cpu")
    assert len(layers) == 2 and layers[0].shape == (2, 4, 1, 2)
    assert (layers[0][0, :2] == 0).all() and (layers[0][0, 2:] != 0).all()  # nothing on padding
    assert (layers[1][..., 1] == 0).all()  # a dimension that never varies gets no noise
    alone = noise.for_batch(["a"], torch.tensor([[1, 1]]), torch.float32, "cpu")
    torch.testing.assert_close(alone[0][0], layers[0][0, 2:], rtol=0, atol=0)
    # SD: scale x the dimension's SD, over many positions.
    wide = noise.for_batch(["c"], torch.ones(1, 20_000, dtype=torch.long), torch.float32, "cpu")[0][0, :, 0]
    np.testing.assert_allclose(wide.std(0).numpy(), [3.0, 6.0], rtol=0.03)


def test_head_output_spread_is_the_sd_over_every_prompts_steps(tiny_model, tiny_activity):
    spread = synergy.head_output_spread(tiny_model, tiny_activity, batch_size=2, pad_token_id=0)
    inputs = []
    handle = tiny_model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0][:, -5:].reshape(-1, 4, 16))
    )
    with torch.no_grad():
        for record in tiny_activity:  # one prompt at a time: no padding at all
            batch = teacher_forced_batch([record.prompt_token_ids], [record.completion_token_ids], 0)
            tiny_model(**batch)
    handle.remove()
    assert spread["sd"].shape == (2, 4, 16) and int(spread["positions"]) == 15
    expected = torch.cat(inputs).std(0, correction=1)
    torch.testing.assert_close(spread["sd"][1], expected, rtol=1e-4, atol=1e-6)


def test_ablation_curves_average_prompts_then_repeats():
    rows = [
        ("synergistic_first", 0, 0.5, 4, "p0", 1.0),
        ("synergistic_first", 0, 0.5, 4, "p1", 3.0),
        ("random", 0, 0.5, 4, "p0", 1.0),
        ("random", 0, 0.5, 4, "p1", 1.0),
        ("random", 1, 0.5, 4, "p0", 2.0),
        ("random", 1, 0.5, 4, "p1", 4.0),
    ]
    curves = synergy.ablation_curves(pd.DataFrame(rows, columns=synergy.DIVERGENCE_COLUMNS))
    assert list(curves.columns) == ["order", "fraction", "heads_removed", "divergence", "divergence_sd", "repeats"]
    assert curves["order"].tolist() == ["synergistic_first", "random"]
    assert curves["divergence"].tolist() == [2.0, 2.0]  # random: repeat means 1 and 3
    assert math.isnan(curves.loc[0, "divergence_sd"]) and curves.loc[1, "divergence_sd"] == pytest.approx(math.sqrt(2))
    assert curves["repeats"].tolist() == [1, 2] and curves["heads_removed"].tolist() == [4, 4]


ABLATION_SETTINGS = {"method": "noise", "noise_scale": 1.0, "seed": 0, "batch_size": 4, "random_orders": 2,
                     "fraction_step": 0.25}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "dropout"}, "method must be one of \\('zero', 'noise'\\)"),
        ({"noise_scale": -1}, "noise_scale must be a number >= 0"),
        ({"noise_scale": "1"}, "noise_scale"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"random_orders": 1.5}, "random_orders"),
        ({"fraction_step": 0.3}, "must divide 1"),
    ],
)
def test_bad_ablation_settings_are_refused(change, message):
    synergy.check_ablation_settings(ABLATION_SETTINGS)
    with pytest.raises(ValueError, match=message):
        synergy.ablation_noise({**ABLATION_SETTINGS, **change}, {"sd": torch.ones(2, 4, 16)})


def test_zero_method_needs_no_noise():
    assert synergy.ablation_noise({**ABLATION_SETTINGS, "method": "zero"}, {"sd": torch.ones(2, 4, 16)}) is None
    noise = synergy.ablation_noise({**ABLATION_SETTINGS, "noise_scale": 2}, {"sd": torch.ones(2, 4, 16)})
    assert noise.scale == 2.0 and noise.seed == 0


def activity_with_ends(ends, steps=30, seed=0):
    rng = np.random.default_rng(seed)
    norms = torch.from_numpy(rng.random((len(ends), 2, 3, steps)))
    return [
        HeadActivity(prompt_norms, torch.tensor([0]), torch.arange(steps), end)
        for prompt_norms, end in zip(norms, ends)
    ]


def test_natural_ends_cap_the_steps_and_mark_short_prompts():
    activity = activity_with_ends([None, 12, 5, 25])
    prompt_set = prompt_table(["a", "b", "c", "d"], ["x", "x", "y", "y"])
    ends = synergy.natural_ends(prompt_set, activity, max_steps=20, min_steps=6)
    assert list(ends.columns) == ["prompt_id", "category", "natural_end", "steps_used", "analysed"]
    assert ends["prompt_id"].tolist() == ["a", "b", "c", "d"] and ends["category"].tolist() == ["x", "x", "y", "y"]
    assert ends["natural_end"].isna().tolist() == [True, False, False, False]
    assert ends["natural_end"].dropna().tolist() == [12, 5, 25]
    assert ends["steps_used"].tolist() == [20, 12, 5, 20]
    assert ends["analysed"].tolist() == [True, True, False, True]
    assert synergy.natural_ends(prompt_set, activity, None, 6)["steps_used"].tolist() == [30, 12, 5, 25]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": None, "min_steps": 5}, "min_steps must be an integer >= tau \\+ 5 = 6"),
        ({"steps": 10, "min_steps": 12}, "steps must be null \\(every recorded step\\) or an integer >= min_steps"),
        ({"steps": 10.5, "min_steps": 6}, "steps must be null"),
    ],
)
def test_bad_truncation_settings_are_refused(settings, message):
    synergy.check_truncation_settings({"steps": None, "min_steps": 6}, tau=1)
    with pytest.raises(ValueError, match=message):
        synergy.check_truncation_settings(settings, tau=1)


def test_phiid_on_leading_steps_equals_phiid_of_the_cut_series():
    activity = activity_with_ends([None, None, None])
    synergy_matrices, redundancy_matrices, _ = synergy.phiid_matrices(activity, 1, "MMI", "cpu", steps=[30, 12, 12])
    cut = [
        HeadActivity(a.head_output_norms[..., :12], a.prompt_token_ids, a.completion_token_ids, None) for a in activity
    ]
    expected_synergy, expected_redundancy, _ = synergy.phiid_matrices(cut, 1, "MMI", "cpu")
    full_synergy, _, _ = synergy.phiid_matrices(activity, 1, "MMI", "cpu")
    np.testing.assert_allclose(synergy_matrices[1:], expected_synergy[1:], rtol=1e-10)
    np.testing.assert_allclose(redundancy_matrices[1:], expected_redundancy[1:], rtol=1e-10)
    np.testing.assert_allclose(synergy_matrices[0], full_synergy[0], rtol=1e-10)
    assert not np.allclose(synergy_matrices[1], full_synergy[1], equal_nan=True)


def test_phiid_before_the_end_reuses_full_matrices_and_skips_short_prompts():
    activity = activity_with_ends([None, 12, 4])
    ends = synergy.natural_ends(prompt_table(["a", "b", "c"], ["x"] * 3), activity, max_steps=None, min_steps=6)
    # Recognisable stand-ins for the full-length matrices: a prompt with every step must get them unchanged.
    full = np.full((3, 6, 6), 7.0)
    synergy_matrices, redundancy_matrices, invalid = synergy.phiid_matrices_before_end(
        activity, ends, full, full, 1, "MMI", "cpu"
    )
    assert (synergy_matrices[0] == 7).all() and (redundancy_matrices[0] == 7).all()
    expected, _, _ = synergy.phiid_matrices(activity[1:2], 1, "MMI", "cpu", steps=[12])
    np.testing.assert_array_equal(synergy_matrices[1], expected[0])
    assert np.isnan(synergy_matrices[2]).all() and np.isnan(redundancy_matrices[2]).all()
    assert invalid.empty and list(invalid.columns) == ["prompt", "source", "target", "reason"]


# Known answers that the mutation run (`make mutation`, docs/testing.md) showed to be missing.


def _graph_matrix(size: int, edges: list[tuple[int, int, float]]) -> np.ndarray:
    matrix = np.full((size, size), NAN)
    for i, j, weight in edges:
        matrix[i, j] = matrix[j, i] = weight
    return matrix


def test_network_measures_of_a_weighted_path_use_the_weights_for_modularity():
    # 0 -10- 1 -1- 2 -10- 3: communities {0, 1}, {2, 3}; weighted modularity 2 (10/21 - (21/42)^2) = 20/21 - 1/2
    # (unweighted it would be 1/6); efficiency (3 + 2/2 + 1/3) / 6 over the six head pairs.
    matrix = _graph_matrix(4, [(0, 1, 10.0), (1, 2, 1.0), (2, 3, 10.0)])
    assert synergy.network_measures(matrix, 1.0, seed=0) == {
        "global_efficiency": pytest.approx(13 / 18),
        "modularity": pytest.approx(20 / 21 - 1 / 2),
        "communities": 2,
        "nodes": 4,
        "edges": 3,
    }


def test_louvain_communities_follow_the_strong_pairs_of_a_ring():
    # Strong pairs (0, 1), (2, 3), (4, 5) joined by weak links: 3 (10/33 - (22/66)^2) = 10/11 - 1/3. Without the
    # weights the ring's communities could as well be (1, 2), (3, 4), (5, 0).
    ring = _graph_matrix(6, [(0, 1, 10.0), (1, 2, 1.0), (2, 3, 10.0), (3, 4, 1.0), (4, 5, 10.0), (5, 0, 1.0)])
    measures = synergy.network_measures(ring, 1.0, seed=0)
    assert measures["communities"] == 3 and measures["modularity"] == pytest.approx(10 / 11 - 1 / 3)


def test_network_measures_of_one_edge_and_of_no_edges():
    one = synergy.network_measures(_graph_matrix(3, [(0, 1, 2.0), (1, 2, -1.0)]), 1.0, seed=0)
    assert one == {
        "global_efficiency": pytest.approx(1 / 3),
        "modularity": 0.0,
        "communities": 2,
        "nodes": 3,
        "edges": 1,
    }
    none = synergy.network_measures(_graph_matrix(3, [(0, 1, -2.0), (1, 2, -1.0)]), 1.0, seed=0)
    assert math.isnan(none.pop("modularity"))  # a negative atom is no connection: no edges, no modularity
    assert none == {"global_efficiency": 0.0, "communities": 3, "nodes": 3, "edges": 0}


def test_top_edge_graph_ignores_the_diagonal_and_refuses_a_zero_fraction():
    matrix = _graph_matrix(3, [(0, 1, 1.0)])
    np.fill_diagonal(matrix, 5.0)  # a head's value with itself is no pair: no self-loop, and head 2 is no node
    graph = synergy.top_edge_graph(matrix, 1.0)
    assert sorted(graph.nodes) == [0, 1] and list(graph.edges(data="weight")) == [(0, 1, 1.0)]
    with pytest.raises(ValueError, match=r"edge_fraction must be in \(0, 1\], got 0"):
        synergy.top_edge_graph(matrix, 0)


def test_synergy_redundancy_correlation_drops_only_heads_without_both_scores():
    scores = pd.DataFrame(
        {"synergy": [1.0, 2.0, 3.0, NAN, 4.0], "redundancy": [4.0, 3.0, 1.0, 1.0, 2.0], "rank": [NAN, 1, 2, 3, 4]}
    )
    # Ranks (1, 2, 3, 4) against (4, 3, 1, 2): rho = 1 - 6 * 18 / 60 = -0.8; on 2 degrees of freedom
    # p = 1 - |rho| (for n = 4: t / sqrt(t^2 + 2) = |rho|) = 0.2.
    assert synergy.synergy_redundancy_correlation(scores) == {
        "rho": pytest.approx(-0.8),
        "p_value": pytest.approx(0.2),
        "heads": 4,
    }


def test_heads_per_layer_is_one_past_the_largest_head_number():
    assert synergy.scores.heads_per_layer(np.array([0, 1, 2, 0, 1, 2])) == 3
    assert synergy.scores.heads_per_layer(pd.Series([0, 0])) == 1


def test_degenerate_heads_count_pairs_on_both_sides_and_name_the_commonest_reason():
    # 2 layers x 2 heads: head 0 of prompt 1 (a source in all its pairs) and head 3 of prompt 0 (a target in all).
    invalid = pd.DataFrame(
        [(1, 0, 1, "constant"), (1, 0, 2, "constant"), (1, 0, 3, "non-finite"),
         (0, 0, 3, "non-finite"), (0, 1, 3, "non-finite"), (0, 2, 3, "non-finite"), (0, 1, 2, "constant")],
        columns=["prompt", "source", "target", "reason"],
    )  # fmt: skip
    table = synergy.degenerate_heads(invalid, ["p0", "p1"], layers=2, heads_per_layer=2)
    assert table.to_dict("list") == {
        "prompt_id": ["p0", "p1"],
        "head_index": [3, 0],
        "layer": [1, 0],
        "head": [1, 0],
        "reason": ["non-finite", "constant"],
    }
    assert [table[column].dtype for column in ("head_index", "layer", "head")] == [np.int64] * 3
    assert type(table["prompt_id"][0]) is str


def test_no_undefined_pairs_give_an_empty_degenerate_head_table():
    invalid = pd.DataFrame(columns=["prompt", "source", "target", "reason"])
    table = synergy.degenerate_heads(invalid, ["p0"], layers=2, heads_per_layer=2)
    assert table.empty and list(table.columns) == ["prompt_id", "head_index", "layer", "head", "reason"]


def test_phiid_matrices_refuse_a_step_count_per_prompt_that_does_not_match():
    record = HeadActivity(
        torch.rand(2, 2, 8), torch.zeros(3, dtype=torch.int64), torch.zeros(8, dtype=torch.int64), None
    )
    with pytest.raises(ValueError, match=r"^Got 2 step counts for 1 prompts' activity\.$"):
        synergy.phiid_matrices([record], 1, "MMI", "cpu", steps=[8, 6])


def test_a_layer_without_heads_in_the_table_has_no_score_and_no_heads():
    scores = pd.DataFrame({"layer": [0, 0, 2, 2], "syn_red_score": [0.0, 1.0, 2.0, 4.0]})
    profile = synergy.layer_profile(scores)
    assert profile["layer"].tolist() == [0, 1, 2] and profile["depth"].tolist() == [0.0, 0.5, 1.0]
    assert profile["score"].tolist()[0] == pytest.approx(0.125) and math.isnan(profile["score"][1])
    assert profile["heads"].tolist() == [2, 0, 2] and profile["heads"].dtype == np.int64


def test_nanmean_of_an_all_nan_slice_is_nan_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = synergy.scores.nanmean(np.array([[1.0, NAN], [NAN, NAN]]), axis=1)
    assert means[0] == 1.0 and math.isnan(means[1])


def test_top_edge_graph_drops_zero_weights_and_refuses_a_fraction_above_one():
    graph = synergy.top_edge_graph(_graph_matrix(3, [(0, 1, 0.0), (1, 2, 1.0)]), 1.0)
    assert list(graph.edges) == [(1, 2)] and sorted(graph.nodes) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"edge_fraction must be in \(0, 1\], got 1.5"):
        synergy.top_edge_graph(_graph_matrix(3, [(0, 1, 1.0)]), 1.5)


def test_phiid_matrices_pass_their_lag_and_redundancy_on_to_the_engine():
    from metasyn.synergy.phiid import phiid_all_pairs

    norms = torch.as_tensor(np.random.default_rng(0).lognormal(size=(2, 2, 40)), dtype=torch.float32)
    record = HeadActivity(norms, torch.zeros(3, dtype=torch.int64), torch.zeros(40, dtype=torch.int64), None)
    synergy_matrices, redundancy_matrices, _ = synergy.phiid_matrices([record], 2, "CCS", "cpu")
    expected = phiid_all_pairs(norms.flatten(0, 1)[None], tau=2, redundancy="CCS", atoms=("sts", "rtr"))
    np.testing.assert_allclose(synergy_matrices, expected.atoms["sts"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(redundancy_matrices, expected.atoms["rtr"], rtol=1e-6, atol=1e-9)


def test_undefined_pairs_of_a_prompt_cut_before_its_end_are_numbered_in_the_whole_activity():
    activity = activity_with_ends([None, None, 12])
    activity[2].head_output_norms[0, 1, :12] = 0.5  # head 1 is constant in the 12 analysed steps, not after
    ends = synergy.natural_ends(prompt_table(["a", "b", "c"], ["x"] * 3), activity, max_steps=None, min_steps=6)
    full_synergy, full_redundancy, full_invalid = synergy.phiid_matrices(activity, 1, "MMI", "cpu")
    assert full_invalid.empty
    _, _, invalid = synergy.phiid_matrices_before_end(activity, ends, full_synergy, full_redundancy, 1, "MMI", "cpu")
    assert invalid.to_dict("list") == {
        "prompt": [2] * 5,  # the third prompt of the activity, not the first of the cut ones
        "source": [0, 1, 1, 1, 1],
        "target": [1, 2, 3, 4, 5],
        "reason": ["constant series"] * 5,
    }
