"""Low-bit base weights through bitsandbytes: `model.quantization: nf4|fp4|int8` (QLoRA when adapters train).

bitsandbytes 0.47+ runs its 4-bit and 8-bit layers on CUDA and on CPU, so a QLoRA run trains on either;
other devices (mps) are refused in one line. Quantised weights are frozen: training one needs tuning.peft.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from lmforge.errors import ConfigError
from lmforge.models.device import DTYPES
from lmforge.packages import require

if TYPE_CHECKING:
    import torch

Quantization = Literal["none", "nf4", "fp4", "int8"]
QUANTIZATION_HELP = ("none (as saved), nf4 or fp4 (4-bit, QLoRA's NormalFloat or plain float) or int8 (LLM.int8()); "
                     "through bitsandbytes, on CPU or CUDA")
BITSANDBYTES_DEVICES = ("cpu", "cuda", "xpu")


def bitsandbytes(purpose: str) -> Any:
    """The bitsandbytes module, or a one-line error naming the extra that installs it."""
    return require("bitsandbytes", "qlora", purpose)


def quantized_base(quantization: Quantization, task: Any, task_name: str, precision: str,
                   device: torch.device) -> dict[str, Any] | None:
    """`quantized_loading` for a task's base model, after checking that the task can load it quantised and
    that bitsandbytes runs on `device` (one-line ConfigErrors); None for none."""
    if quantization == "none":
        return None
    if not task.loads_quantized:
        raise ConfigError(f"model.quantization {quantization}: task {task_name} builds its own model around the base "
                          "and cannot load it quantised; set model.quantization=none")
    if device.type not in BITSANDBYTES_DEVICES:
        raise ConfigError(f"model.quantization {quantization} runs on {', '.join(BITSANDBYTES_DEVICES)} "
                          f"(bitsandbytes), not {device.type}; set model.quantization=none or model.device=cpu")
    bitsandbytes(f"model.quantization {quantization}")
    return quantized_loading(quantization, precision, device)


def quantized_loading(quantization: Quantization, precision: str, device: torch.device) -> dict[str, Any]:
    """`from_pretrained` keyword arguments that load the base quantised (nf4, fp4 or int8) on `device`
    (bitsandbytes quantises while it places the weights). 4-bit layers compute in `precision` (fp32|bf16|fp16) and
    quantise their scales too (double quantisation, as in QLoRA); the weights left unquantised (embeddings,
    norms, the head) are read in `precision` too."""
    import torch
    from transformers import BitsAndBytesConfig

    dtype = getattr(torch, DTYPES[precision])
    if quantization == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization,
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    return {"quantization_config": config, "device_map": {"": str(device)}, "dtype": dtype}


def pretrained_kwargs(dtype: torch.dtype | None, quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for a task's `from_pretrained`: weights read in `dtype` (None: as saved; with
    `quantization`, from `quantized_loading`, its compute dtype), quantised per `quantization`."""
    loading = {"dtype": None, **(quantization or {})}
    return loading if dtype is None else {**loading, "dtype": dtype}


def prepare_for_adapters(model: torch.nn.Module) -> torch.nn.Module:
    """A quantised base ready for adapter training: every base weight frozen (the adapters and the task's new
    head are added trainable afterwards).

    bitsandbytes repacks a 4-bit layer for its AVX512-BF16 CPU kernel the first time it runs in eval mode
    (validation) and never back, and that kernel has no backward: the gradients of every layer below would
    silently stop. Training layers keep the plain layout. (peft's prepare_model_for_kbit_training also casts
    the unquantised weights to fp32: 0.8 GB more for a 1B model's embeddings and head, so it is not used.)"""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    model.requires_grad_(False)
    return model
