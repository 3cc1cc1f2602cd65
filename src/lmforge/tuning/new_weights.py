"""Which modules of a task model were not in its pretrained checkpoint (freshly initialised heads, poolers)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open


def checkpoint_keys(folder: str | Path) -> set[str]:
    """Tensor names in a local HF folder's safetensors weights (sharded or not); empty if there are none."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    keys: set[str] = set()
    for name in files:
        if (folder / name).is_file():
            with safe_open(str(folder / name), framework="pt") as handle:
                keys.update(handle.keys())
    return keys


def newly_initialised_modules(model: torch.nn.Module, folder: str | Path) -> list[str]:
    """Modules whose parameters the checkpoint lacks (names matched up to the task model's prefix, e.g.
    `bert.pooler.dense.weight` against `pooler.dense.weight`). These must train or be saved with an adapter,
    or a reload would initialise them afresh."""
    keys = checkpoint_keys(folder)
    if not keys:
        return []
    missing = set()
    for name, _ in model.named_parameters():
        if name not in keys and not any(name.endswith("." + key) or key.endswith("." + name) for key in keys):
            missing.add(name.rsplit(".", 1)[0])
    return sorted(missing)
