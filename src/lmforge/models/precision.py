"""Precision contexts shared by training, evaluation and decoding."""

from __future__ import annotations

import contextlib
import copy
import weakref

import torch

from lmforge.models.hardware import resolve
from lmforge.models.quantize import int8_weights

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 or fp16 autocast when `precision` (auto: as `models.hardware` chooses for `device`) asks for it,
    else a no-op."""
    chosen = resolve(precision, device.type).precision
    if chosen in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[chosen])
    return contextlib.nullcontext()


_DECODING_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decoding_weights(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """The model with the weights decoding should read: as loaded ("fp32"), a bf16 copy (half the bytes per
    token) or a copy with weight-only int8 linear layers (a quarter; `models.quantize`). A copy is made once
    and reused while the model's parameters are unchanged (an optimizer step makes a new one)."""
    if kind == "fp32":
        return model
    if kind not in ("bf16", "int8"):
        raise ValueError(f"unknown decoding weights {kind!r}; use fp32, bf16 or int8")
    versions = tuple(p._version for p in model.parameters())
    cached = _DECODING_COPIES.get(model, {}).get(kind)
    if cached is not None and cached[0] == versions:
        return cached[1]
    if kind == "bf16":
        resolve("bf16", next(model.parameters()).device.type)  # warns once where bf16 is emulated
        converted = copy.deepcopy(model).to(torch.bfloat16)
    else:
        converted = int8_weights(model)
    _DECODING_COPIES.setdefault(model, {})[kind] = (versions, converted)
    return converted
