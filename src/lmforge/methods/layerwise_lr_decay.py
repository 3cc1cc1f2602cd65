"""Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA): the task head learns at train.lr, the top
transformer layer at decay × train.lr, each layer below at decay × the rate of the one above, the embeddings
at the lowest rate."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TuningMethod
from lmforge.methods.freezing import transformer_layers


def layer_depths(model: torch.nn.Module) -> dict[int, int]:
    """Each parameter's depth (by id): 0 for those before the first transformer block (embeddings), i + 1 in
    block i, one above the top block for everything after it (final norm, pooler, task head)."""
    try:
        layers = transformer_layers(model)
    except ConfigError:
        raise ConfigError(f"tuning.layerwise_lr_decay: {type(model).__name__} has no transformer layer stack to "
                          "decay over; set it to 1") from None
    in_layer = {id(p): i + 1 for i, layer in enumerate(layers) for p in layer.parameters()}
    depths, seen_layer = {}, False
    for parameter in model.parameters():
        seen_layer = seen_layer or id(parameter) in in_layer
        depths[id(parameter)] = in_layer.get(id(parameter), len(layers) + 1 if seen_layer else 0)
    return depths


class LayerwiseLrDecay(TuningMethod):
    fields = {"layerwise_lr_decay": (float, Field(1.0, gt=0, le=1, description="Layer-wise learning-rate decay: "
                                                                               "each transformer layer learns at this "
                                                                               "× the rate of the one above it (the "
                                                                               "head at train.lr); 1 = off. Typical "
                                                                               "0.8–0.95."))}
    example: ClassVar[dict[str, Any]] = {"layerwise_lr_decay": 0.8}

    @classmethod
    def enabled(cls, tuning: Any) -> bool:
        return tuning.layerwise_lr_decay < 1

    def param_groups(self, model: torch.nn.Module, groups: list[dict], lr: float) -> list[dict]:
        depths = layer_depths(model)
        top, decay = max(depths.values()), self.tuning.layerwise_lr_decay
        split: list[dict] = []
        for group in groups:
            by_depth: dict[int, list] = {}
            for parameter in group["params"]:
                by_depth.setdefault(depths[id(parameter)], []).append(parameter)
            split += [group | {"params": params, "lr": group.get("lr", lr) * decay ** (top - depth)}
                      for depth, params in sorted(by_depth.items())]
        return split
