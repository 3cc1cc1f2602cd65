"""Adversarial training on the input embeddings (FGM, PGD): the perturbed loss's gradients join the clean ones."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod
from lmforge.tuning.adversarial import AdversarialParams, adversarial_backward


class Adversarial(TuningMethod):
    fields = {"adversarial": (AdversarialParams | None, Field(None, description="Adversarial training on the "
                                                                                "embeddings, e.g. {method: fgm, "
                                                                                "epsilon: 1.0}; null = off."))}
    example = {"adversarial": {"method": "fgm"}}

    def check(self, session: TrainingSession) -> None:
        if session.precision == "fp16":
            raise ConfigError("tuning.adversarial does not work with fp16 training yet (its extra backward pass is "
                              "not loss-scaled); use train.precision auto, bf16 or fp32")

    def after_backward(self, model: torch.nn.Module, clean_loss: Callable[[], torch.Tensor]) -> None:
        adversarial_backward(model, clean_loss, self.tuning.adversarial)
