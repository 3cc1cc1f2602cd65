"""The `tuning.sequence` section: which sequence-level method, with which rewards and samples."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lmforge.config.strict import STRICT
from lmforge.metrics.rewards import RewardSpec


class SequenceParams(BaseModel):
    """`tuning.sequence`: sequence-level training of a generation task."""

    model_config = STRICT

    method: Literal["mrt", "scst", "grpo"] = Field(..., description="mrt (minimum risk), scst (self-critical) or grpo.")
    rewards: list[RewardSpec] = Field(..., min_length=1, description="Rewards and weights, e.g. [{name: chrf}] or "
                                                                     "[{name: regex, pattern: '...'}].")
    samples: int = Field(4, ge=2, description="Candidates per prompt (MRT's N, GRPO's group size).")
    candidates: Literal["sample", "beam"] = Field("sample", description="How the candidates are drawn: sampled, or "
                                                                        "the `samples` best of a beam search (MRT only).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the candidates.")
    top_k: int | None = Field(None, gt=0, description="Sample among the k most likely tokens only.")
    max_new_tokens: int = Field(64, gt=0, description="Longest candidate.")
    sharpness: float = Field(1.0, ge=0, description="MRT: Q ∝ p^sharpness over the candidates.")
    clip: float = Field(0.2, gt=0, lt=1, description="GRPO: ratio clipping ε.")
    kl_weight: float = Field(0.04, ge=0, description="GRPO: weight of the KL penalty to the reference model "
                                                     "(the model before training; with LoRA, adapters off).")
    ce_weight: float = Field(0.0, ge=0, description="Adds this × the token cross-entropy of the row's own reply "
                                                    "(Edunov et al. 2018: sequence risk + token NLL).")

    @model_validator(mode="after")
    def _beam_for_mrt_only(self) -> SequenceParams:
        if self.candidates == "beam" and self.method != "mrt":
            raise ValueError(f"candidates: beam suits mrt only; {self.method} learns from sampled outputs")
        return self
