"""Freezing: the embeddings, the bottom N transformer layers, or the whole body (only the head trains)."""

from __future__ import annotations

import torch
from pydantic import Field

from lmforge.methods.base import TrainingSession, TuningMethod
from lmforge.tuning.freeze import freeze


class Freezing(TuningMethod):
    fields = {
        "freeze_embeddings": (bool, Field(False, description="Freeze the embedding layer(s).")),
        "freeze_layers": (int, Field(0, ge=0, description="Freeze the bottom N transformer layers.")),
        "train_only_head": (bool, Field(False, description="Freeze the whole pretrained body; only the task head "
                                                           "trains.")),
    }
    example = {"freeze_layers": 1, "freeze_embeddings": True}

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        freeze(model, self.tuning)
        return model
