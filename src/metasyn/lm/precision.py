"""The dtype a model computes in during inference: bfloat16 where the hardware has it, the model's own elsewhere.

Generation (data_prep's samples, calibration's answers and elicitation, synergy's token trajectories) and the
ablation forwards run in ``inference_dtype`` (globals.yml). On this project's CPU (AVX-512 BF16; /proc/cpuinfo lists
no AMX) bfloat16 generates about twice as fast as float32 (benchmarks/README.md), and tests/test_precision.py
bounds what it changes: next-token distributions and elicited confidences stay within a stated tolerance of
float32. Recording the head norms that PhiID reads, and training, keep the model's own dtype (float32 on a CPU).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import torch

from metasyn.lm.models import LanguageModel, resolve_dtype

# /proc/cpuinfo flags of CPUs that compute bfloat16 matrix products natively (oneDNN uses them); without them,
# torch emulates bfloat16 on a CPU, which is slower than float32.
NATIVE_BFLOAT16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, so no native bfloat16 assumed
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split()[2:])


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware (CUDA with bf16; AMX/AVX-512 BF16 CPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(NATIVE_BFLOAT16_CPU_FLAGS & _cpu_flags())
    return False


def resolve_inference_dtype(name: str, lm: LanguageModel) -> torch.dtype:
    """``auto`` -> bfloat16 where the model's device has it natively, else the model's dtype; or a dtype name."""
    weights = next(lm.model.parameters())
    if name == "auto":
        return torch.bfloat16 if has_native_bfloat16(weights.device) else weights.dtype
    return resolve_dtype(name, weights.device)


def computing_in(lm: LanguageModel, dtype_name: str) -> LanguageModel:
    """The model computing in ``dtype_name`` (see ``resolve_inference_dtype``): itself when it already does, else a
    cast copy, so that the caller's model keeps its weights (a float32 -> bfloat16 -> float32 round trip would
    round them)."""
    dtype = resolve_inference_dtype(dtype_name, lm)
    if next(lm.model.parameters()).dtype == dtype:
        return lm
    return LanguageModel(copy.deepcopy(lm.model).to(dtype), lm.tokenizer)
