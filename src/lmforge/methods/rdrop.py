"""R-Drop: each batch runs twice (two dropout masks); the loss adds rdrop × the symmetric KL of the two."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import LossFn, TrainingSession, TuningMethod
from lmforge.tuning.regularise import rdrop_loss


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
