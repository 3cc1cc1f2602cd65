"""Faster decoding steps: fp32 products over a few rows (beams, small batches, drafts), and compiled steps.

On CPU, MKL's `x @ W.T` with 2–16 rows runs far below the memory bandwidth that one row reaches
(SmolLM2's LM head, 4 rows: 16.8 ms), while `(W @ x.T).T` — the same products, with W as the left
operand — streams the weights once for all rows (4.3 ms); a 4-row SmolLM2 step drops from ~80 to ~51 ms,
about one row's cost. The two can differ in the last bits (the products are summed in another order),
like any change of batch size.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import nn

FEW_ROWS = range(2, 17)  # rows for which the weight-first product is faster on CPU (bench/decode_speed.py)
ROW_SIZES = (2, 3, 4, 5, 6, 8, 16)  # rows are padded up to one of these: the others cost more than the next one
_LINEARS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    (W @ x.T).T; the model is as it was afterwards."""
    device = next(model.parameters()).device
    if rows not in FEW_ROWS or device.type != "cpu":
        yield
        return
    linears = _LINEARS.get(model)
    if linears is None:
        linears = [m for m in model.modules() if type(m) is nn.Linear and m.weight.dtype == torch.float32]
        _LINEARS[model] = linears
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
