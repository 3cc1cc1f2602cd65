"""PEFT: LoRA, DoRA, IA³, prompt or prefix tuning from `peft`; the base stays frozen, adapter and head train."""

from __future__ import annotations

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod
from lmforge.methods.peft.params import PeftParams


class Peft(TuningMethod):
    fields = {"peft": (PeftParams | None, Field(None, description="A PEFT method, e.g. {method: lora, r: 8}; null = "
                                                                  "no adapters."))}
    excludes = ("freeze_layers", "freeze_embeddings", "train_only_head")
    exclusion_reason = "already freezes the pretrained body"
    shardable = False
    example = {"peft": {"method": "lora", "r": 4}}

    def check(self, session: TrainingSession) -> None:
        if not getattr(session.task, "supports_peft", True):
            raise ConfigError(f"tuning.peft is not supported for {type(session.task).__name__} yet; use freezing "
                              "instead")

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        """Modules the base checkpoint lacks (the task head, an absent pooler) train and save with the adapter."""
        from lmforge.methods.peft.attach import (  # (peft: imported where used)
            attach,
            newly_initialised_modules,
        )

        return attach(model, self.tuning.peft, newly_initialised_modules(model, session.base_path))
