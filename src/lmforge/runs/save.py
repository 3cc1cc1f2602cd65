"""Save what a tuning run produced: an adapter, a strategy network, or the full model."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from lmforge.methods.strategy_network.experts import ROUTER_ATTRIBUTE, save_strategy_network
from lmforge.models.adapters import save_adapter
from lmforge.models.export import save_pretrained_atomic, write_folder_atomic


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, target: Path,
               weights: dict | None = None, base_reference: str | None = None) -> Path:
    """A PEFT run saves its adapter (+ head, base config and `base_reference`, the base as the config named it),
    a strategy network its experts and router; any other run the full model (`weights`: its gathered state
    dict, for a sharded model)."""
    if hasattr(model, ROUTER_ATTRIBUTE):
        experts = list(model.peft_config)
        return write_folder_atomic(target, lambda staging: save_strategy_network(model, experts, staging), tokenizer)
    if isinstance(model, PeftModel):
        return write_folder_atomic(target, lambda staging: save_adapter(model, staging, base_reference), tokenizer)
    return save_pretrained_atomic(model, tokenizer, target, weights)
