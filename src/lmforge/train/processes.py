"""Which process this is when training runs under `accelerate launch` / torchrun (one process otherwise)."""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state(cpu: bool = False) -> PartialState:
    """accelerate's view of the processes: rank, world size, the main process (on the CPU when `cpu`; the first
    call in a process decides). Processes launched on a machine without a GPU (`accelerate launch --multi_gpu
    --num_processes N` there, or torchrun) join one gloo group — accelerate's PartialState sees them only when
    told to use the CPU."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=cpu or parse_flag_from_env("ACCELERATE_USE_CPU")
                        or (launched and not torch.cuda.is_available()))


def launcher_argv() -> list[str]:
    """The command line of the process that started this one (empty when unknown)."""
    try:
        import psutil

        return psutil.Process(os.getppid()).cmdline()
    except Exception:  # noqa: BLE001 — no parent to read: nothing to check
        return []


def check_launch(parent: list[str] | None = None) -> None:
    """Refuse a run that `accelerate launch --num_processes N` (N > 1) started as one process: without
    --multi_gpu, accelerate starts a single process even though N were asked for (`--cpu` does this)."""
    from lmforge.errors import ConfigError

    if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError("accelerate launch --use_deepspeed: lmforge does not drive DeepSpeed; train.fsdp=true shards "
                          "parameters, gradients and optimizer state the way ZeRO-3 does (FSDP2, on GPUs and CPUs) — "
                          "launch with --multi_gpu and set it")
    parent = launcher_argv() if parent is None else parent
    launched_by_accelerate = any("accelerate" in a for a in parent) and any(a.endswith("launch") for a in parent)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or not launched_by_accelerate:
        return
    asked = None
    for index, argument in enumerate(parent):
        flag, _, value = argument.partition("=")
        if flag in ("--num_processes", "--num-processes"):
            asked = value or (parent[index + 1] if index + 1 < len(parent) else None)
    if asked is not None and asked.isdigit() and int(asked) > 1:
        raise ConfigError(f"accelerate launch started one process although --num_processes {asked} was asked for "
                          "(it starts several only with --multi_gpu); on a machine without a GPU use "
                          f"`accelerate launch --multi_gpu --num_processes {asked} -m lmforge.cli train …`: the "
                          "processes join one gloo group on the CPU")
