"""Continual learning: go on from a trained run on new data without forgetting the old task.

Replay mixes a seeded sample of the old run's training rows into the new training data; EWC (Kirkpatrick
et al. 2017) adds `ewc/2 · Σ F_i (θ_i − θ*_i)²`, where θ* are the old weights and F the diagonal
Fisher information measured on old rows (per-example squared gradients of the old model's loss).
A classification head grows to the union of old and new labels; the old labels' rows are kept.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import torch
from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT
from lmforge.models.modes import eval_mode


class ContinualParams(BaseModel):
    model_config = STRICT

    previous_run: str = Field(..., description="Run directory of the already-tuned model to continue from.")
    replay: int = Field(0, ge=0, description="Old training rows mixed into the new training data (seeded sample).")
    ewc: float = Field(0.0, ge=0, description="EWC strength λ; 0 = off. Scale to the Fisher values: 1e3–1e6 is common.")
    ewc_samples: int = Field(256, gt=0, description="Old training rows the Fisher information is estimated on.")


def replay_sample(old_rows: list, count: int, seed: int) -> list:
    """`count` old rows (all of them when there are fewer), the same ones for the same seed."""
    return list(old_rows) if count >= len(old_rows) else random.Random(seed).sample(list(old_rows), count)


def classifier_layer(model: torch.nn.Module, num_labels: int) -> tuple[torch.nn.Module, str]:
    """(parent, attribute) of the last linear layer with `num_labels` outputs: the classification head."""
    found = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Linear) and child.out_features == num_labels:
                found = (parent, name)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no linear layer with {num_labels} outputs to grow")
    return found


def grow_head(model: torch.nn.Module, old_count: int, new_count: int) -> None:
    """Give the classification head `new_count` outputs; the first `old_count` keep their trained weights."""
    if new_count == old_count:
        return
    parent, name = classifier_layer(model, old_count)
    old: torch.nn.Linear = getattr(parent, name)
    grown = torch.nn.Linear(old.in_features, new_count, bias=old.bias is not None, device=old.weight.device,
                            dtype=old.weight.dtype)
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    torch.nn.init.normal_(grown.weight, std=std)
    with torch.no_grad():
        grown.weight[:old_count] = old.weight
        if old.bias is not None:
            grown.bias.zero_()
            grown.bias[:old_count] = old.bias
    setattr(parent, name, grown)
    model.config.num_labels = new_count


def fisher_diagonal(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean squared gradient of each trainable parameter over `batches` (one example each), in eval mode."""
    squares = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    count = 0
    with eval_mode(model):
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            for name, parameter in model.named_parameters():
                if parameter.grad is not None and name in squares:
                    squares[name] += parameter.grad.detach() ** 2
            count += 1
    model.zero_grad(set_to_none=True)
    return {name: square / max(count, 1) for name, square in squares.items()}


class EwcPenalty:
    """`strength/2 · Σ F (θ − θ*)²` over the parameters measured on the old task (a grown head: its old rows)."""

    def __init__(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor], strength: float):
        self.strength = strength
        parameters = dict(model.named_parameters())
        self.anchors = {name: (parameters[name].detach().clone(), weight) for name, weight in fisher.items()
                        if name in parameters}

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        parameters = dict(model.named_parameters())
        total = torch.zeros((), device=next(iter(parameters.values())).device)
        for name, (anchor, weight) in self.anchors.items():
            current = parameters[name]
            if current.shape != anchor.shape:  # a grown head: its first rows are the old labels'
                current = current[: anchor.shape[0]]
            total = total + (weight * (current - anchor) ** 2).sum()
        return self.strength / 2 * total
