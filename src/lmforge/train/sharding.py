"""Fully sharded training (`train.fsdp`, or `accelerate launch --use_fsdp`): torch's FSDP2 (`fully_shard`) over the
processes of `accelerate launch`, on GPUs (NCCL) and on CPUs (gloo) alike — accelerate applies FSDP on accelerators
only, so lmforge calls torch's API itself, the same way on both. Each process holds 1/N of the parameters,
gradients and optimizer state; checkpoints are sharded (torch.distributed.checkpoint), the saved model is one
consolidated Hugging Face folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from lmforge.errors import ConfigError

T = TypeVar("T")


def in_turn(load: Callable[[], T], processes: Any) -> T:
    """`load()` in each process one after another (a model loads through a transient second copy: loaded at
    once, the processes' peaks would add up)."""
    result = None
    for rank in range(processes.num_processes):
        if rank == processes.process_index:
            result = load()
        processes.wait_for_everyone()
    return result


def wants_fsdp(setting: bool) -> bool:
    """train.fsdp, or a launch with `accelerate launch --use_fsdp`."""
    return setting or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp(model: torch.nn.Module, unshardable: list[str], processes: int, optimizer: str) -> None:
    """FSDP here shards a model trained whole over several processes with torch's optimizers: one process, tuning
    methods that wrap the body (`unshardable`: their `tuning:` fields — PEFT adapters, the strategy network) and
    optimizers that cannot step sharded tensors are refused in one line."""
    if optimizer not in ("adamw", "sgd"):
        raise ConfigError(f"train.optimizer {optimizer} cannot step sharded (DTensor) parameters; with train.fsdp use "
                          "adamw or sgd")
    if processes < 2:
        raise ConfigError("train.fsdp shards the model over the processes of `accelerate launch`; this run has one — "
                          "launch it with `accelerate launch --multi_gpu --num_processes N -m lmforge.cli train …` "
                          "(on CPUs too), or set train.fsdp=false")
    if unshardable:
        raise ConfigError(f"train.fsdp shards a model trained whole; tuning.{unshardable[0]} trains in data-parallel "
                          "processes without it (set train.fsdp=false)")
    if not blocks(model):
        raise ConfigError(f"train.fsdp: {type(model).__name__} has no transformer blocks to shard by; train it "
                          "without train.fsdp")


def blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's transformer blocks: modules of the classes it names in `_no_split_modules`, else the entries of
    its longest ModuleList."""
    named = set(getattr(model, "_no_split_modules", None) or ())
    found = [module for module in model.modules() if type(module).__name__ in named]
    if found:
        return found
    lists = [module for module in model.modules() if isinstance(module, torch.nn.ModuleList) and len(module) > 1]
    return list(max(lists, key=len)) if lists else []


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` with every transformer block, then the whole, sharded over all processes (FSDP2)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    model.to(device)
    for block in blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered on the CPU (every process must call it; each gets the full dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Each process writes its shards of the weights and optimizer state into `folder` (every process calls it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": weights, "optimizer": optimizer_state}, checkpoint_id=str(folder))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Read this process's shards back from `folder` into the sharded model and optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    weights, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": weights, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
