"""Which number format runs fast here: bf16 only where the hardware computes it natively.

`precision: auto` becomes bf16 on CUDA devices that support it and on CPUs with AVX512-BF16 or AMX
(read from /proc/cpuinfo), fp16 on older CUDA GPUs (training adds a gradient scaler), fp32 elsewhere.
bf16 on a CPU without those instructions is emulated and many times slower than fp32: asked for
explicitly, it runs, with a one-line warning that gives the slowdown measured on a small matmul.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Capabilities:
    """What a device computes natively: its kind, whether bf16 is fast on it, and how we know."""

    device: str  # cpu | cuda | mps | …
    bf16_native: bool
    detail: str


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16 | fp16
    reason: str
    emulated: bool = False  # bf16 asked for where it is not native (slow)


def cpu_capabilities(cpuinfo: str | None = None) -> Capabilities:
    """The CPU's bf16 support from its flags (`cpuinfo`: the text of /proc/cpuinfo; read when None)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    detail = f"the CPU has {', '.join(found)}" if found else "the CPU has no AVX512-BF16/AMX (bf16 would be emulated)"
    return Capabilities("cpu", bool(found), detail)


@functools.cache
def device_capabilities(device_type: str, index: int | None = None) -> Capabilities:
    """What `device_type` (cpu, cuda, mps) computes natively; read once per process."""
    if device_type == "cuda":
        index = torch.cuda.current_device() if index is None else index
        name, (major, minor) = torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index)
        native = torch.cuda.is_bf16_supported()
        return Capabilities("cuda", native, f"{name} (sm_{major}{minor}) {'supports' if native else 'lacks'} bf16")
    if device_type == "cpu":
        return cpu_capabilities()
    return Capabilities(device_type, False, f"{device_type}: fp32 is the safe default")


def choose_precision(requested: str, capabilities: Capabilities) -> PrecisionChoice:
    """The precision to run in: `requested` unless it is auto, which picks by `capabilities`."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        emulated = requested == "bf16" and capabilities.device == "cpu" and not capabilities.bf16_native
        return PrecisionChoice(requested, "as configured", emulated)
    if capabilities.device == "cuda":
        return PrecisionChoice("bf16" if capabilities.bf16_native else "fp16", f"auto: {capabilities.detail}")
    if capabilities.device == "cpu" and capabilities.bf16_native:
        return PrecisionChoice("bf16", f"auto: {capabilities.detail}")
    return PrecisionChoice("fp32", f"auto: {capabilities.detail}")


def bf16_slowdown(size: int = 256, repeats: int = 3) -> float:
    """How many times slower a bf16 matmul is than fp32 on this CPU (one small measurement)."""
    a = torch.randn(size, size)

    def seconds(x: torch.Tensor) -> float:
        x @ x  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            x @ x
        return time.perf_counter() - started
    return seconds(a.to(torch.bfloat16)) / max(seconds(a), 1e-9)


@functools.cache
def resolve(requested: str, device_type: str = "cpu") -> PrecisionChoice:
    """`choose_precision` for a device of this kind; an emulated bf16 warns once, with its measured cost."""
    choice = choose_precision(requested, device_capabilities(device_type))
    if choice.emulated:
        print(f"lmforge: warning: bf16 on this CPU is emulated ({device_capabilities(device_type).detail}): a matmul "
              f"runs {bf16_slowdown():.1f}x slower than fp32 here; set precision to auto or fp32", file=sys.stderr)
    return choice
