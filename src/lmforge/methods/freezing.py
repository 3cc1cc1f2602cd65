"""Freezing: the embeddings, the bottom N transformer layers, or the whole body (only the head trains); and the
count of what still trains."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def _body(model: torch.nn.Module) -> torch.nn.Module:
    """The pretrained backbone: `base_model` for HF task models, `encoder` for lmforge's relation head."""
    for name in ("encoder", "base_model"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module) and module is not model:
            return _body(module) if name == "encoder" and hasattr(module, "base_model") else module
    return model


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks (encoder.layer, model.layers, transformer.h, …): the longest ModuleList
    whose length is the config's layer count."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and (count is None or len(m) == count)]
    if not stacks:
        raise ConfigError(f"tuning.freeze_layers: cannot find the layer stack of {type(model).__name__}")
    return max(stacks, key=len)


def freeze(model: torch.nn.Module, params: Any) -> None:
    """Apply the `tuning:` freezing switches (freeze_embeddings, freeze_layers, train_only_head) in place."""
    body = _body(model)
    if params.train_only_head:
        for parameter in body.parameters():
            parameter.requires_grad_(False)
        return
    if params.freeze_embeddings:
        embeddings = [m for name, m in body.named_modules() if name.split(".")[-1].endswith("embeddings")]
        for module in embeddings or [model.get_input_embeddings()]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    if params.freeze_layers:
        layers = transformer_layers(body)
        if params.freeze_layers > len(layers):
            raise ConfigError(f"tuning.freeze_layers is {params.freeze_layers} but the model has {len(layers)} layers")
        for layer in layers[: params.freeze_layers]:
            for parameter in layer.parameters():
                parameter.requires_grad_(False)


class Freezing(TuningMethod):
    fields = {
        "freeze_embeddings": (bool, Field(False, description="Freeze the embedding layer(s).")),
        "freeze_layers": (int, Field(0, ge=0, description="Freeze the bottom N transformer layers.")),
        "train_only_head": (bool, Field(False, description="Freeze the whole pretrained body; only the task head "
                                                           "trains.")),
    }
    example = {"freeze_layers": 1, "freeze_embeddings": True}

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        freeze(model, self.tuning)
        return model
