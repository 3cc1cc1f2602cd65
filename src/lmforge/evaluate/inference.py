"""Batched forward passes in length order, results returned in input order."""

from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm

from lmforge.data.batching import BatchOrder, pad_batch
from lmforge.tasks.base import Task


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def compute_logits(task: Task, model: torch.nn.Module, features: list[dict], batch_size: int, pad_id: int,
                   precision: str = "fp32", progress: bool = False) -> torch.Tensor:
    """Logits for every feature, in the order given (batches are formed longest-first)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = BatchOrder([len(f["input_ids"]) for f in features], batch_size, seed=0, shuffle=False)
    outputs: dict[int, torch.Tensor] = {}
    for indices in tqdm(list(order), desc="evaluating", disable=not progress, leave=False):
        batch = pad_batch([{k: v for k, v in features[i].items() if k != "labels"} for i in indices], pad_id)
        with autocast_for(precision, device):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        for row, index in enumerate(indices):
            outputs[index] = logits[row]
    model.train(was_training)
    return torch.stack([outputs[i] for i in range(len(features))])


def predict(task: Task, model: torch.nn.Module, features: list[dict], batch_size: int, pad_id: int,
            precision: str = "fp32", progress: bool = False) -> list[dict]:
    """The task's decoded predictions for every feature."""
    if not features:
        return []
    return task.decode(compute_logits(task, model, features, batch_size, pad_id, precision, progress))
