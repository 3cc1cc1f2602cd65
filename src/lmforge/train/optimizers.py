"""`train.optimizer` and `train.scheduler`: the optimizers of torch and transformers by name, and
transformers' learning-rate schedules (`get_scheduler`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import get_scheduler

from lmforge.errors import ConfigError
from lmforge.models.quantization import BITSANDBYTES_DEVICES, bitsandbytes


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def _adafactor(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    from transformers.optimization import Adafactor

    return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)


def _adamw_8bit(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return bitsandbytes("train.optimizer adamw_8bit").optim.AdamW8bit(groups, lr=lr)


def _sgd(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


#: train.optimizer -> builder(parameter groups, lr); adamw is torch's fused AdamW (HF Trainer's default)
OPTIMIZERS: dict[str, Callable[[list[dict], float], torch.optim.Optimizer]] = {
    "adamw": _adamw, "adafactor": _adafactor, "adamw_8bit": _adamw_8bit, "sgd": _sgd,
}


def check_optimizer(name: str, device: torch.device) -> None:
    """Refuse an optimizer `device` cannot run, before anything is written."""
    if name == "adamw_8bit":
        if device.type not in BITSANDBYTES_DEVICES:
            raise ConfigError(f"train.optimizer adamw_8bit runs on {', '.join(BITSANDBYTES_DEVICES)} (bitsandbytes), "
                              f"not {device.type}; use adamw or adafactor")
        bitsandbytes("train.optimizer adamw_8bit")


def build_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](groups, lr)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup: int, total: int) -> Any:
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
