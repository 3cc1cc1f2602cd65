"""Faster decoding steps: fp32 products over a few rows (beams, small batches, drafts), and compiled steps.

On some CPUs MKL's `x @ W.T` with 2–16 rows runs far below the memory bandwidth that one row reaches
(SmolLM2's LM head, 4 rows: 16.8 ms), while `(W @ x.T).T` — the same products, with W as the left
operand — streams the weights once for all rows (4.3 ms); a 4-row SmolLM2 step dropped from ~80 to ~51 ms.
On others it is the reverse (an AVX-512/AMX EPYC: a 2-row SmolLM2 step 36 ms plain, 80 ms weight-first), so
which one a model uses for a number of rows is timed once per process over its own layers (models under 16M
linear weights, e.g. tests' tiny models, always take the weight-first product). The two can
differ in the last bits (the products are summed in another order), like any change of batch size.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import nn

FEW_ROWS = range(2, 17)  # rows for which the weight-first product is faster on CPU (bench/decode_speed.py)
ROW_SIZES = (2, 3, 4, 5, 6, 8, 16)  # rows are padded up to one of these: the others cost more than the next one
TIMED_FROM = 1 << 24  # weights of a model's linear layers from which the faster product is timed, not assumed
WEIGHT_FIRST_MARGIN = 0.9  # weight-first is taken where it is clearly faster: at most this share of x @ W.T's time
_LINEARS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (fp32 linears, their shapes if timed)
_FASTER: dict[tuple, bool] = {}  # (layer shapes, rows) → weight-first is faster here


def weight_first_pays(linears: list[nn.Linear], shapes: tuple | None, rows: int) -> bool:
    """Whether `(W @ x.T).T` beats `x @ W.T` for `rows` rows through `linears` (a model's fp32 layers, of weight
    `shapes`; None: too small to time, weight-first) on this machine by a clear margin: timed once per process,
    layer shapes and row count (so every load of a model decodes alike), every layer once each way, the best of 4
    passes taken in turns (weights read from memory as in a decoding step, not from a cache they fit in; ~0.3 s
    for SmolLM2)."""
    if shapes is None:
        return True
    key = (shapes, rows)
    if key not in _FASTER:
        padded = next(size for size in ROW_SIZES if size >= rows)
        inputs = {n: torch.randn(rows, n, device=linears[0].weight.device) for n in {m.in_features for m in linears}}
        wide = {n: torch.cat([x, x.new_zeros(padded - rows, n)]) for n, x in inputs.items()}
        with torch.no_grad():
            plain, first = _fastest(lambda: [nn.functional.linear(inputs[m.in_features], m.weight) for m in linears],
                                    lambda: [torch.matmul(m.weight, wide[m.in_features].T) for m in linears])
        _FASTER[key] = first < WEIGHT_FIRST_MARGIN * plain
    return _FASTER[key]


def _fastest(plain: Callable[[], object], first: Callable[[], object], rounds: int = 4) -> tuple[float, float]:
    """The best time of each of two passes, taken in turns (a burst of load elsewhere hits both alike)."""
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, products in enumerate((plain, first)):
            started = time.perf_counter()
            products()
            best[side] = min(best[side], time.perf_counter() - started)
    return best[0], best[1]


def _weight_first(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    if rows not in FEW_ROWS or not x.dtype == linear.weight.dtype == torch.float32:
        return nn.functional.linear(x, linear.weight, linear.bias)
    flat = x.reshape(rows, -1)
    padded = next(size for size in ROW_SIZES if size >= rows)
    if padded > rows:  # MKL is slow for some column counts: 11 rows took 109 ms a SmolLM2 step, 16 rows 88 ms
        flat = torch.cat([flat, flat.new_zeros(padded - rows, flat.shape[1])])
    out = torch.matmul(linear.weight, flat.T)[:, :rows].T.reshape(*x.shape[:-1], linear.out_features)
    return out if linear.bias is None else out + linear.bias


@contextlib.contextmanager
def weight_first_linear(model: nn.Module, rows: int) -> Iterator[None]:
    """While a forward of `model` over `rows` token rows runs on CPU, its fp32 `nn.Linear` layers compute
    (W @ x.T).T where that is the faster product here (`weight_first_pays`); the model is as it was afterwards."""
    device = next(model.parameters()).device
    if rows not in FEW_ROWS or device.type != "cpu":
        yield
        return
    found = _LINEARS.get(model)
    if found is None:
        linears = [m for name, m in model.named_modules()  # not peft's LoRA factors (small, many): x @ W.T
                   if type(m) is nn.Linear and m.weight.dtype == torch.float32 and ".lora_" not in name]
        timed = sum(linear.weight.numel() for linear in linears) >= TIMED_FROM
        found = _LINEARS[model] = (linears, tuple(linear.weight.shape for linear in linears) if timed else None)
    linears, shapes = found  # found once per model, not at every step
    if not linears or not weight_first_pays(linears, shapes, rows):
        yield
        return
    for linear in linears:
        linear.__dict__["forward"] = partial(_weight_first, linear)  # an instance attribute shadows the method
    try:
        yield
    finally:
        for linear in linears:
            linear.__dict__.pop("forward", None)


def compiled_forward(model: nn.Module) -> Callable:
    """`torch.compile(model.forward)`, made once per model (kept on the model, so it goes with it). Shapes are
    fixed only with a static cache; a new batch size or cache length compiles again."""
    compiled = model.__dict__.get("_lmforge_compiled_forward")
    if compiled is None:
        compiled = torch.compile(model.forward)
        model.__dict__["_lmforge_compiled_forward"] = compiled
    return compiled
