"""Which pretrained model to start from and how it may be fetched."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lmforge.models.lstm import LstmParams


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="A local HF directory, a packaged alias (`lmforge models`), a hub id, or "
                                         "`lstm` for the from-scratch baseline.")
    allow_network: bool = Field(False, description="Allow downloading a hub id; off by default (lmforge works offline).")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the checkpoint; only for sources you trust.")
    lstm: LstmParams = Field(default_factory=LstmParams, description="Sizes of the `lstm` baseline (used only when name is lstm).")
