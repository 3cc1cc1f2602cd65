"""The `tuning.peft` section (the whole `tuning:` section is made from TUNING's methods, lmforge.methods)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lmforge.config.strict import STRICT
from lmforge.config.validate import refuse_foreign_knobs

PeftMethod = Literal["lora", "dora", "ia3", "prompt", "prefix"]
#: the knobs each method reads (adapter_name is every method's)
PEFT_KNOBS: dict[str, frozenset[str]] = {
    "lora": frozenset({"r", "alpha", "dropout", "target_modules"}),
    "dora": frozenset({"r", "alpha", "dropout", "target_modules"}),
    "ia3": frozenset({"target_modules"}),
    "prompt": frozenset({"num_virtual_tokens"}),
    "prefix": frozenset({"num_virtual_tokens"}),
}


class PeftParams(BaseModel):
    """A parameter-efficient method from `peft`; the base model stays frozen, the task head trains."""

    model_config = STRICT

    method: PeftMethod = Field(..., description="lora, dora (weight-decomposed LoRA), ia3, prompt (prompt tuning) or prefix.")
    r: int = Field(8, gt=0, description="LoRA/DoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA/DoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA/DoRA input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Module names to adapt, or all-linear (every linear layer but the output head). Default: "
                          "all-linear for LoRA/DoRA (on SST-2 it matched full fine-tuning where query+value did not), "
                          "peft's per-architecture choice for IA3.")
    num_virtual_tokens: int = Field(20, gt=0, description="Prompt/prefix tuning: learned virtual tokens.")
    adapter_name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="Name the adapter is saved under.")

    @model_validator(mode="after")
    def _knobs_match_method(self) -> PeftParams:
        own = PEFT_KNOBS[self.method]
        refuse_foreign_knobs(self, frozenset().union(*PEFT_KNOBS.values()) - own,
                             f"method {self.method!r} (it reads {', '.join(sorted(own))})")
        return self

