"""Which process this is when training runs under `accelerate launch` / torchrun (one process otherwise)."""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state() -> PartialState:
    """accelerate's view of the processes: rank, world size, the main process. Processes launched on a machine
    without a GPU (`accelerate launch --multi_gpu --num_processes N` there, or torchrun) join one gloo group —
    accelerate's PartialState sees them only when told to use the CPU."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available()))
