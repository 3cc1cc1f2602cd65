"""The `tuning.strategy_network` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT


class StrategyNetworkParams(BaseModel):
    """One LoRA expert per task (the rows' `task` field) and a router trained jointly with them."""

    model_config = STRICT

    r: int = Field(8, gt=0, description="Rank of each expert's LoRA.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Layers each expert adapts.")
    temperature: float = Field(2.0, gt=0, description="Task sampling: a batch's task is drawn ∝ (task rows)^(1/T); "
                                                      "1 = proportional, large = uniform over tasks.")
    router_weight: float = Field(1.0, gt=0, description="Weight of the router's cross-entropy (which expert fits the "
                                                        "input) in the training loss.")
    router_memory: int = Field(1024, ge=0, description="The router also trains on the prompt features of this many "
                                                       "recent rows (all tasks), not only on the batch's one task; the "
                                                       "features come from the frozen backbone, so they never go stale.")
