"""R-Drop: each batch runs twice (two dropout masks); the loss adds rdrop × the symmetric KL of the two.

R-Drop (Liang et al. 2021) runs every batch twice — as one doubled batch, so dropout draws two masks —
and adds `alpha` × the symmetric KL divergence (the mean of both directions) between the two predicted distributions to the mean
cross-entropy of both passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import LossFn, TrainingSession, TuningMethod

IGNORE = -100


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over rows of (KL(p_a‖p_b) + KL(p_b‖p_a)) / 2, each row a distribution over the last dimension."""
    log_a, log_b = F.log_softmax(logits_a.float(), dim=-1), F.log_softmax(logits_b.float(), dim=-1)
    per_row = (log_a.exp() * (log_a - log_b)).sum(-1) + (log_b.exp() * (log_b - log_a)).sum(-1)
    return per_row.mean() / 2 if per_row.numel() else per_row.sum()


def rdrop_loss(loss_fn: Callable, model: torch.nn.Module, batch: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """Cross-entropy of two dropout passes (`loss_fn(model, batch) -> (loss, logits)`) plus `alpha` × their
    symmetric KL (rows whose label is ignored skipped)."""
    doubled = {key: torch.cat([value, value]) for key, value in batch.items()}
    loss, logits = loss_fn(model, doubled)
    first, second = logits.chunk(2)
    labels = batch.get("labels")
    if labels is not None and labels.shape == first.shape[:-1]:
        counted = labels != IGNORE
        first, second = first[counted], second[counted]
    return loss + alpha * symmetric_kl(first, second)


class RDrop(TuningMethod):
    fields = {"rdrop": (float, Field(0.0, ge=0, description="R-Drop weight: run each batch twice (two dropout masks) "
                                                            "and add rdrop × the symmetric KL of the two "
                                                            "predictions; 0 = off. Typical 0.5–5."))}
    example = {"rdrop": 1.0}

    def check(self, session: TrainingSession) -> None:
        if not getattr(session.task, "supports_rdrop", False):
            raise ConfigError(f"tuning.rdrop applies to single-label classification, token classification and "
                              f"relation extraction, not {type(session.task).__name__}; set it to 0")

    def wrap_loss(self, loss: LossFn, task: Any) -> LossFn:
        return lambda model, batch: (rdrop_loss(loss, model, batch, self.tuning.rdrop), None)
