"""Apply the `tuning:` section to a freshly loaded task model, and save whatever it produced."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from lmforge.errors import ConfigError
from lmforge.models.export import save_pretrained_atomic, write_folder_atomic
from lmforge.tuning.adapters import attach, save_adapter
from lmforge.tuning.freeze import freeze
from lmforge.tuning.new_weights import newly_initialised_modules
from lmforge.tuning.params import TuningParams
from lmforge.tuning.strategy_network.experts import ROUTER_ATTRIBUTE, attach_experts, save_strategy_network


def apply_tuning(model: torch.nn.Module, params: TuningParams, task: object, base_path: str) -> torch.nn.Module:
    """The model to train: frozen in part, wrapped with a PEFT adapter, or unchanged. With PEFT, modules the
    checkpoint at `base_path` lacks (the task head, an absent pooler) train and are saved with the adapter. The
    strategy network attaches one expert per task of `task.experts` and the router."""
    if params.strategy_network is not None:
        return attach_experts(model, params.strategy_network, task.experts)
    if params.peft is not None:
        if not getattr(task, "supports_peft", True):
            raise ConfigError(f"tuning.peft is not supported for {type(task).__name__} yet; use freezing instead")
        return attach(model, params.peft, newly_initialised_modules(model, base_path))
    freeze(model, params)
    return model


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
