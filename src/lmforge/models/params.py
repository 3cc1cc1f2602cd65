"""Which pretrained model to start from and how it may be fetched."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT
from lmforge.models.device import DEVICE_HELP, DEVICE_PATTERN
from lmforge.models.lstm import LstmParams
from lmforge.models.quantization import QUANTIZATION_HELP, Quantization


class ModelParams(BaseModel):
    model_config = STRICT

    name: str = Field(..., description="A local HF directory, a packaged alias (`lmforge models`), a hub id, or "
                                         "`lstm` for the from-scratch baseline.")
    allow_network: bool = Field(False, description="Allow downloading a hub id; off by default (lmforge works offline).")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the checkpoint; only for sources you trust.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=f"Where the model runs: {DEVICE_HELP}. "
                                                                    "Every verb that runs a model takes --device too.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Weights' dtype outside training (evaluate, predict, generate, serve…): auto is fp32 on "
                            "CPUs, bf16 on accelerators (fp16 where bf16 is missing). Training keeps fp32 weights "
                            "(train.precision autocasts) unless set.")
    quantization: Quantization = Field(
        "none", description=f"Hold the base's linear layers in low bits: {QUANTIZATION_HELP}. Training a quantised "
                            "base needs tuning.peft (QLoRA: nf4 + lora); its runs load the base the same way.")
    lstm: LstmParams = Field(default_factory=LstmParams, description="Sizes of the `lstm` baseline (used only when name is lstm).")
