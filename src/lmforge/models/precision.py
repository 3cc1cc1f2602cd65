"""Precision contexts shared by training, evaluation and decoding."""

from __future__ import annotations

import contextlib
import copy

import torch


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def decoding_weights(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """The model with the weights decoding should read: as loaded ("fp32") or a bf16 copy (half the bytes
    per token; perplexity within 1% on SmolLM2). int8 is not offered: torch's dynamic quantization (int8
    activations too) costs SmolLM2 +17% to +350% perplexity, and weight-only int8 is slower than fp32 on
    CPU (docs/benchmarks.md)."""
    if kind == "fp32":
        return model
    if kind == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16)
    raise ValueError(f"unknown decoding weights {kind!r}; use fp32 or bf16")
