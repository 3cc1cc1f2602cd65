"""Atomic, resumable checkpoints: weights (safetensors), optimizer, scheduler, RNG and loop state."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from lmforge.errors import RunDirError
from lmforge.files import STAGING_PREFIX, SWAPPED_PREFIX, atomic_write_text, no_space

CHECKPOINT_NAME = re.compile(r"step-\d{8}")  # the folders save_checkpoint writes
SHARDS = "shards"  # a sharded checkpoint's weights and optimizer state (torch.distributed.checkpoint)
TRAINABLE = "trainable.safetensors"  # a partly frozen model's checkpoint: the parameters that train


@dataclass
class LoopState:
    """Where the loop is: enough to continue exactly where it stopped."""

    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of that epoch already trained on
    global_step: int = 0  # optimizer steps so far
    epoch_loss_sum: float = 0.0  # summed training loss of this epoch's batches so far
    epoch_batches: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    grad_scaler: dict[str, Any] | None = None  # fp16 training: the gradient scaler's state


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_folder(run_dir: Path) -> Path:
    """A new staging folder for the next checkpoint."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))


def save_checkpoint(run_dir: Path, state: LoopState, model: torch.nn.Module | None,
                    optimizer: torch.optim.Optimizer | None, scheduler: Any, keep: int, staging: Path | None = None) -> Path:
    """Write checkpoints/step-N atomically, point `latest` at it, and prune old ones. A sharded run's processes
    have written their weights and optimizer shards into `staging` already (model and optimizer are None)."""
    root = run_dir / "checkpoints"
    final = root / f"step-{state.global_step:08d}"
    try:
        staging = staging or staging_folder(run_dir)
        if model is not None:
            _save_weights(model, staging)
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        torch.save(_rng_state(), staging / "rng.pt")
        (staging / "state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    except BaseException as error:  # a full disk, SIGTERM/SIGINT mid-write: the last complete checkpoint stands
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        full = no_space(error, root, _checkpoint_bytes(root, model, optimizer)) if isinstance(error, Exception) else None
        if full is not None:
            raise full from None
        raise
    if final.exists():
        old = final.with_name(SWAPPED_PREFIX + final.name)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old)
    else:
        os.replace(staging, final)
    atomic_write_text(root / "latest", final.name + "\n")
    for stale in _complete_checkpoints(root)[:-keep]:  # only lmforge's own: nothing else in the folder is touched
        shutil.rmtree(stale)
    return final


def _complete_checkpoints(root: Path) -> list[Path]:
    """The checkpoint folders save_checkpoint wrote completely into `root`, oldest first."""
    return sorted(p for p in root.glob("step-*") if CHECKPOINT_NAME.fullmatch(p.name) and (p / "state.json").is_file())


def _checkpoint_bytes(root: Path, model: torch.nn.Module | None, optimizer: Any) -> int:
    """About what one checkpoint takes: the last complete one's size, else the weights and optimizer state."""
    done = _complete_checkpoints(root)
    if done:
        return sum(f.stat().st_size for f in done[-1].rglob("*") if f.is_file())
    if model is None:
        return 0
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return 3 * weights  # the weights and two Adam moments


def _save_weights(model: torch.nn.Module, folder: Path) -> None:
    """The whole model, or — when part of it is frozen (PEFT, frozen layers) — only the parameters that train:
    the frozen ones are the base model's, loaded again on resume (a LoRA checkpoint: MBs, not the base's GBs)."""
    parameters = dict(model.named_parameters())
    if all(p.requires_grad for p in parameters.values()):
        save_model(model, str(folder / "model.safetensors"))
        return
    trainable = {name: p.detach().contiguous() for name, p in parameters.items() if p.requires_grad}
    save_file(trainable, str(folder / TRAINABLE))


def _load_weights(model: torch.nn.Module, folder: Path) -> None:
    if not (folder / TRAINABLE).is_file():
        load_model(model, str(folder / "model.safetensors"))
        return
    saved = load_file(str(folder / TRAINABLE))
    parameters = dict(model.named_parameters())
    unknown = sorted(set(saved) - set(parameters))
    if unknown:
        raise RunDirError(f"{folder / TRAINABLE} holds {unknown[0]!r}, which this model does not have; the run's "
                          "model changed since the checkpoint")
    with torch.no_grad():
        for name, value in saved.items():
            parameters[name].copy_(value)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir` holds a checkpoint to resume from."""
    return (Path(run_dir) / "checkpoints" / "latest").is_file()


def read_state(checkpoint: Path) -> LoopState:
    """The loop state saved in `checkpoint`."""
    return LoopState(**json.loads((checkpoint / "state.json").read_text(encoding="utf-8")))


def latest_state(run_dir: Path) -> LoopState:
    """The loop state of the run's latest checkpoint."""
    return read_state(latest_checkpoint(run_dir))


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint `latest` points at; a clear error when the run has none."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        raise RunDirError(f"{run_dir} has no checkpoint to resume from (no checkpoints/latest); start a new run instead")
    path = run_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    if not (path / "state.json").is_file():
        raise RunDirError(f"checkpoint {path} is incomplete (no state.json)")
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int = 0) -> LoopState:
    """Restore weights, optimizer, scheduler and RNG from `path` (this process's shards and RNG in a sharded
    checkpoint); return the loop state."""
    if (path / SHARDS).is_dir():
        from lmforge.train.sharding import load_sharded

        load_sharded(path / SHARDS, model, optimizer)
    else:
        _load_weights(model, path)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    own = path / f"rng-{rank}.pt"
    _set_rng_state(torch.load(own if own.is_file() else path / "rng.pt", weights_only=True))
    return read_state(path)


def save_process_rng(staging: Path, rank: int) -> None:
    """This process's RNG state beside a sharded checkpoint's shards (each process draws its own dropout)."""
    torch.save(_rng_state(), staging / f"rng-{rank}.pt")
