"""Mean pooling of token states over the positions a mask keeps."""

from __future__ import annotations

import torch


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(rows, hidden): `states` (rows, tokens, hidden) averaged over the tokens where `mask` (rows, tokens) is
    nonzero (a row with none gives zeros)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1)
