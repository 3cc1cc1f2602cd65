"""Weight-only int8 linear layers for decoding: a quarter of fp32's bytes per token.

Each output channel of a weight keeps its own scale (absmax / 127). A decoding step multiplies a few rows
by the weights, which is bound by reading them: `torch._weight_int8pack_mm` (torch's own CPU kernel) reads
the int8 weights directly, with bf16 activations where the hardware computes bf16 natively and fp32
elsewhere (`models.hardware`). With many rows (a prompt's prefill) it is slower than a matmul, so those
rows go through the weights dequantized to that dtype instead.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lmforge.models.hardware import device_capabilities

GEMV_MAX_ROWS = 16  # above this many rows the dequantized bf16 matmul is faster on CPU (docs/benchmarks.md)


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, fp32 scale per output row) with weight ≈ int8 * scale[:, None]."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return quantized, scale


class Int8Linear(nn.Module):
    """A frozen `nn.Linear` with int8 weights and a scale per output channel, computing in bf16 where the
    device has native bf16, else fp32; returns its input's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        quantized, scale = quantize_per_channel(linear.weight)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        native = device_capabilities(linear.weight.device.type).bf16_native
        self.compute_dtype = torch.bfloat16 if native else torch.float32
        self.register_buffer("weight_int8", quantized.contiguous())
        self.register_buffer("scale", scale.to(self.compute_dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(self.compute_dtype)
        if rows.shape[0] <= GEMV_MAX_ROWS and rows.device.type == "cpu":
            out = torch._weight_int8pack_mm(rows.contiguous(), self.weight_int8, self.scale)
        else:
            out = nn.functional.linear(rows, self.weight_int8.to(self.compute_dtype)) * self.scale
        out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def int8_weights(model: nn.Module) -> nn.Module:
    """A copy of `model` whose linear layers (the LM head too, even when tied to the embeddings) hold int8
    weights; embeddings and norms stay as they are. For decoding only: the copy cannot be trained."""
    quantized = copy.deepcopy(model)
    for module in list(quantized.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return quantized
