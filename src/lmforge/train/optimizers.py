"""`train.optimizer` and `train.scheduler`: the optimizers of torch and transformers by name, and
transformers' learning-rate schedules (`get_scheduler`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import get_scheduler

from lmforge.errors import ConfigError


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def _adafactor(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    from transformers.optimization import Adafactor

    return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)


def _bitsandbytes():
    """bitsandbytes, where it can run (CUDA); else a one-line ConfigError."""
    if not torch.cuda.is_available():
        raise ConfigError("train.optimizer adamw_8bit runs on CUDA GPUs only (bitsandbytes); on this machine use "
                          "adamw or adafactor")
    try:
        import bitsandbytes
    except ImportError:
        raise ConfigError("train.optimizer adamw_8bit needs bitsandbytes: pip install bitsandbytes") from None
    return bitsandbytes


def _adamw_8bit(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return _bitsandbytes().optim.AdamW8bit(groups, lr=lr)


def _sgd(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


#: train.optimizer -> builder(parameter groups, lr); adamw is torch's fused AdamW (HF Trainer's default)
OPTIMIZERS: dict[str, Callable[[list[dict], float], torch.optim.Optimizer]] = {
    "adamw": _adamw, "adafactor": _adafactor, "adamw_8bit": _adamw_8bit, "sgd": _sgd,
}


def check_optimizer(name: str) -> None:
    """Refuse an optimizer this machine cannot run, before anything is written."""
    if name == "adamw_8bit":
        _bitsandbytes()


def build_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](groups, lr)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup: int, total: int) -> Any:
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
