"""Precision contexts shared by training, evaluation and decoding."""

from __future__ import annotations

import contextlib

import torch


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
