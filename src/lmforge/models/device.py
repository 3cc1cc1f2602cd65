"""Where a model runs (`model.device`, `--device`) and in which dtype its weights are held (`model.dtype`).

auto picks the best device present: CUDA, then Apple MPS, then the CPU. Asking for a device that is not
there is a one-line error. `model.dtype: auto` holds weights in fp32 on CPUs (exact parity with Hugging Face,
and what the CPU kernels are tuned for) and in bf16 (fp16 where bf16 is missing) on accelerators.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lmforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
DEVICE_HELP = "auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:N or mps"
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def check_device_name(name: str, field: str = "--device") -> str:
    if not re.match(DEVICE_PATTERN, name):
        raise ConfigError(f"{field} {name!r}: choose {DEVICE_HELP}")
    return name


def resolve_device(name: str = "auto", field: str = "device") -> torch.device:
    """The torch device for `name`; a one-line error when that device is not present."""
    import torch

    check_device_name(name, field)
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{field} {name}: this machine has no CUDA device (torch {torch.__version__} sees none); "
                              "use --device cpu or auto (model.device in a config)")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{field} {name}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 … "
                              f"cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not has_mps:
        raise ConfigError(f"{field} mps: Apple's MPS backend is not available here; use --device cpu or auto "
                          "(model.device in a config)")
    return torch.device(name)


def weight_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The dtype weights are held in on `device` for inference (`model.dtype`)."""
    import torch

    if setting != "auto":
        return getattr(torch, DTYPES[setting])
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "mps" else torch.float32


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether `model` (or the base under a PEFT wrapper) holds bitsandbytes weights (`model.quantization`)."""
    return bool(getattr(model, "is_quantized", False) or getattr(getattr(model, "base_model", None), "is_quantized", False))


def place(model: torch.nn.Module, device: str = "auto", dtype: str = "auto") -> torch.nn.Module:
    """`model` moved to `device` with its floating-point weights in `dtype` (see `weight_dtype`); a
    bitsandbytes-quantised model stays where and as it loaded (it is quantised on its device, its other
    weights in the dtype it loaded in)."""
    if is_quantized(model):
        return model
    target = resolve_device(device)
    return model.to(device=target, dtype=weight_dtype(dtype, target))
