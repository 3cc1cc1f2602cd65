"""A served model's torch weights let go while llama.cpp decodes it, and read back from its folder on the first
request that needs torch (a strategy llama.cpp does not run): a server on llama.cpp holds llama.cpp's copy alone.

The module keeps its structure, config and buffers; each parameter's storage is swapped for an empty one, then
for the folder's weights again (the same parameter objects, so every holder of the model sees them back).
"""

from __future__ import annotations

import sys
import threading

import torch

RELEASED = "_lmforge_released_dtype"  # on a released model: the dtype its weights come back in
_LOCK = threading.Lock()


def release_weights(model: torch.nn.Module) -> None:
    """Free the storage of `model`'s parameters (tied ones once)."""
    dtype = next(model.parameters()).dtype
    for parameter in model.parameters():  # shared (tied) parameters come once
        parameter.data = torch.empty(0, dtype=parameter.dtype, device=parameter.device)
    setattr(model, RELEASED, dtype)


def weights_released(model: torch.nn.Module) -> bool:
    return getattr(model, RELEASED, None) is not None


def restore_weights(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with its weights in memory: read back from its folder where they were released."""
    if not weights_released(model):
        return model
    with _LOCK:
        if not weights_released(model):
            return model
        folder = model.name_or_path
        print(f"lmforge: a request needs torch: loading {folder}'s torch weights again", file=sys.stderr)
        fresh = type(model).from_pretrained(folder, dtype=getattr(model, RELEASED))
        for (name, parameter), (fresh_name, loaded) in zip(model.named_parameters(), fresh.named_parameters(),
                                                            strict=True):
            assert name == fresh_name, f"{name} != {fresh_name}"
            parameter.data = loaded.data.to(parameter.device)
        setattr(model, RELEASED, None)
    return model
