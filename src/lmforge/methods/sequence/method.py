"""Sequence-level training of a generation task on its own decoded outputs: MRT, SCST or GRPO with rewards."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import LossFn, TrainingSession, TuningMethod
from lmforge.methods.sequence.params import SequenceParams


class Sequence(TuningMethod):
    fields = {"sequence": (SequenceParams | None, Field(None, description="Sequence-level training of a generation "
                                                                          "task on its own decoded outputs: {method: "
                                                                          "mrt|scst|grpo, rewards: [{name: chrf}], "
                                                                          "samples: 4}; null = cross-entropy."))}
    example = {"sequence": {"method": "mrt", "samples": 2, "rewards": [{"name": "chrf"}]}}

    def __init__(self, tuning: Any) -> None:
        super().__init__(tuning)
        self.objective: Any = None  # the SequenceObjective, once the loss is wrapped
        self.load_predictor = None

    def check(self, session: TrainingSession) -> None:
        if getattr(getattr(session.task, "params", None), "name", None) != "generation":
            raise ConfigError("tuning.sequence trains generation tasks (task: generation)")
        if session.task.encoder_decoder:
            raise ConfigError("tuning.sequence supports decoder-only models for now")
        self.load_predictor = session.load_predictor

    def wrap_loss(self, loss: LossFn, task: Any) -> LossFn:
        from lmforge.methods.sequence.train import (
            SequenceObjective,  # (the decoding engine: imported where used)
        )

        self.objective = SequenceObjective(task, self.tuning.sequence, self.load_predictor, token_loss=loss)
        return self.objective

    def step_stats(self) -> dict[str, float]:
        return self.objective.stats if self.objective is not None else {}
