"""Batched forward passes in length order, outputs returned per feature in input order, unpadded."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from lmforge.data.batching import BatchOrder, pad_batch
from lmforge.models.modes import eval_mode
from lmforge.models.precision import autocast_for
from lmforge.tasks.base import Task


@torch.no_grad()
def compute_outputs(task: Task, model: torch.nn.Module, features: list[dict], batch_size: int, pad_id: int,
                    precision: str = "fp32", progress: bool = False) -> list[torch.Tensor]:
    """The model's logits for every feature, in the order given; per-token outputs are cut to the
    feature's own length (batches are formed longest-first to waste little on padding)."""
    device = next(model.parameters()).device
    order = BatchOrder([len(f["input_ids"]) for f in features], batch_size, seed=0, shuffle=False)
    outputs: dict[int, torch.Tensor] = {}
    with eval_mode(model):
        for indices in tqdm(list(order), desc="predicting", disable=not progress, leave=False):
            batch = pad_batch([{k: v for k, v in features[i].items() if k != "labels"} for i in indices], pad_id)
            with autocast_for(precision, device):
                logits = task.forward(model, {k: v.to(device) for k, v in batch.items()})
            logits = logits.float().cpu()  # (batch, labels) or (batch, tokens, labels)
            for row, index in enumerate(indices):
                outputs[index] = logits[row, : len(features[index]["input_ids"])] if logits.dim() == 3 else logits[row]
    return [outputs[i] for i in range(len(features))]


def predict(task: Task, model: torch.nn.Module, features: list[dict], examples: list[Any], batch_size: int,
            pad_id: int, precision: str = "fp32", progress: bool = False) -> list[dict]:
    """The task's predictions, one per example; tasks that write text (generation) decode with `task.generate`."""
    if not examples:
        return []
    if hasattr(task, "generate"):
        return task.generate(model, features, examples, batch_size, pad_id, precision, progress)
    return task.decode(compute_outputs(task, model, features, batch_size, pad_id, precision, progress), features, examples)


def predict_examples(task: Task, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, examples: list[Any],
                     max_length: int, batch_size: int, precision: str = "fp32", progress: bool = False) -> list[dict]:
    """`predict` on raw examples: encoded with `tokenizer` first."""
    return predict(task, model, task.encode(examples, tokenizer, max_length), examples, batch_size,
                   tokenizer.pad_token_id, precision, progress)
