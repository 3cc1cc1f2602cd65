"""The experts and the router: LoRA adapters named after the tasks on one PEFT model, and a small router
over the prompt's mean hidden state from the shared backbone (adapters off). Saved beside each other:

    model/<task>/adapter_config.json, adapter_model.safetensors   one expert per task
    model/strategy_network.json, strategy_network.safetensors     the experts' order and the router
    model/config.json                                             the base model's config
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from lmforge.errors import ConfigError, ModelError
from lmforge.files import atomic_write_text
from lmforge.methods.strategy_network.params import StrategyNetworkParams
from lmforge.models.adapters import base_model_path
from lmforge.models.pooling import masked_mean

if TYPE_CHECKING:  # peft is imported where it is used: a server that never loads an adapter does without it
    from peft import PeftModel

SPEC_FILE = "strategy_network.json"
ROUTER_FILE = "strategy_network.safetensors"
ROUTER_ATTRIBUTE = "strategy_router"


class Router(torch.nn.Module):
    """Expert logits from a prompt's mean hidden state (normalised, then one linear layer)."""

    def __init__(self, hidden_size: int, experts: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden_size, elementwise_affine=False)
        self.linear = torch.nn.Linear(hidden_size, experts)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features.float()))


def prompt_features(model: PeftModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, hidden) mean last hidden state of the shared backbone (adapters off, no gradient) over each row's
    prompt tokens (`prompt_mask`, default the attended ones). Rows are right-padded, so the prompt positions
    see only the prompt (causal attention) and a training row's features equal its prompt's alone."""
    with torch.no_grad(), model.disable_adapter():
        hidden = model.get_base_model().base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return masked_mean(hidden, attention_mask if prompt_mask is None else prompt_mask).float()


def router_of(model: torch.nn.Module) -> Router:
    return getattr(model, ROUTER_ATTRIBUTE)


def attach_experts(model: torch.nn.Module, params: StrategyNetworkParams, experts: list[str]) -> PeftModel:
    """`model` wrapped with one fresh LoRA adapter per expert and a router; all of them train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                        target_modules=params.target_modules, task_type=TaskType.CAUSAL_LM)
    try:
        wrapped = get_peft_model(model, config, adapter_name=experts[0])
    except ValueError as exc:
        raise ConfigError(f"tuning.strategy_network: {str(exc).splitlines()[0]}") from None
    for name in experts[1:]:
        wrapped.add_adapter(name, config)
    for name, parameter in wrapped.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(True)  # the optimizer holds every expert; set_adapter picks who gets gradients
    wrapped.add_module(ROUTER_ATTRIBUTE, Router(model.config.hidden_size, len(experts)))
    return wrapped


def save_strategy_network(model: PeftModel, experts: list[str], folder: Path) -> None:
    """Every expert in its own subfolder, the router and the experts' order, and the base config."""
    active = model.active_adapter
    model.save_pretrained(folder, safe_serialization=True, selected_adapters=experts)
    model.set_adapter(active)
    save_file({k: v.contiguous() for k, v in router_of(model).state_dict().items()}, str(Path(folder) / ROUTER_FILE))
    router = router_of(model).linear
    atomic_write_text(Path(folder) / SPEC_FILE, json.dumps({"experts": experts, "hidden_size": router.in_features}) + "\n")
    model.get_base_model().config.save_pretrained(folder)


def is_strategy_network_dir(folder: Path) -> bool:
    return (Path(folder) / SPEC_FILE).is_file()


def saved_spec(folder: Path) -> dict:
    """The saved experts' order and the router's input size ({"experts": [...], "hidden_size": n})."""
    return json.loads((Path(folder) / SPEC_FILE).read_text(encoding="utf-8"))


def load_strategy_network(folder: Path, build_model: Callable[[str], torch.nn.Module]) -> tuple[PeftModel, list[str]]:
    """(model with every expert and the router, expert names) from a saved folder; `build_model(path)` builds
    the base model the experts were trained on."""
    from peft import PeftModel

    folder = Path(folder)
    spec = saved_spec(folder)
    experts = spec["experts"]
    missing = [name for name in experts if not (folder / name / "adapter_config.json").is_file()]
    if missing:
        raise ModelError(f"{folder}: the strategy network lacks expert(s) {', '.join(missing)} "
                         f"(expected {folder}/<expert>/adapter_config.json)")
    model = PeftModel.from_pretrained(build_model(base_model_path(folder / experts[0])), str(folder / experts[0]),
                                      adapter_name=experts[0], is_trainable=False)
    for name in experts[1:]:
        model.load_adapter(str(folder / name), adapter_name=name, is_trainable=False)
    router = Router(spec["hidden_size"], len(experts))
    router.load_state_dict(load_file(str(folder / ROUTER_FILE)))
    model.add_module(ROUTER_ATTRIBUTE, router.eval())
    return model, experts
