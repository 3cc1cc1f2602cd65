"""Fusion for generation: image features projected into k prefix embeddings of a decoder-only LM (ClipCap,
Mokady et al. 2021, arXiv:2111.09734) — the design's z = concat(z_v, z_t) with z_v in the LM's input space.

The LM reads [prefix (k vectors) ; text tokens] and learns to continue with the caption — the
`image-captioning` task trains it with the normal trainer (tasks/image_captioning.py). Decoding runs
on the engine with the prefix as a soft prompt (`PromptInputs.prompt_embeds` of a `DecodeRequest`), so every strategy
and rule applies.
"""

from __future__ import annotations

import torch
from torch import nn


class ImagePrefix(nn.Module):
    """ClipCap's MLP: (n, feature_size) image features -> (n, length, hidden) LM input embeddings."""

    def __init__(self, feature_size: int, hidden_size: int, length: int = 10) -> None:
        super().__init__()
        self.feature_size, self.hidden_size, self.length = feature_size, hidden_size, length
        middle = hidden_size * length // 2
        self.net = nn.Sequential(nn.Linear(feature_size, middle), nn.Tanh(), nn.Linear(middle, hidden_size * length))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).view(-1, self.length, self.hidden_size)
