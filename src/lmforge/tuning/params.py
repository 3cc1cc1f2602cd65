"""The `tuning:` section: which parameters train."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmforge.config.validate import refuse_foreign_knobs
from lmforge.tuning.adversarial import AdversarialParams
from lmforge.tuning.continual import ContinualParams
from lmforge.tuning.sequence.params import SequenceParams
from lmforge.tuning.strategy_network.params import StrategyNetworkParams

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

    model_config = ConfigDict(extra="forbid")

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


class TuningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    freeze_embeddings: bool = Field(False, description="Freeze the embedding layer(s).")
    freeze_layers: int = Field(0, ge=0, description="Freeze the bottom N transformer layers.")
    train_only_head: bool = Field(False, description="Freeze the whole pretrained body; only the task head trains.")
    peft: PeftParams | None = Field(None, description="A PEFT method, e.g. {method: lora, r: 8}; null = no adapters.")
    adversarial: AdversarialParams | None = Field(None, description="Adversarial training on the embeddings, e.g. "
                                                                    "{method: fgm, epsilon: 1.0}; null = off.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Spread this share of each target's probability "
                                                                "evenly over all classes (cross-entropy tasks).")
    continual: ContinualParams | None = Field(None, description="Go on from a trained run: {previous_run: RUN_DIR, "
                                                                "replay: N, ewc: λ}; the report adds old-task forgetting.")
    sequence: SequenceParams | None = Field(None, description="Sequence-level training of a generation task on its "
                                                              "own decoded outputs: {method: mrt|scst|grpo, rewards: "
                                                              "[{name: chrf}], samples: 4}; null = cross-entropy.")
    strategy_network: StrategyNetworkParams | None = Field(
        None, description="Multi-task strategy network for a generation task over rows from several tasks (their "
                          "'task' field): one LoRA expert per task and a router that picks the expert per input from "
                          "its hidden state, e.g. {r: 8, temperature: 2.0}; null = off.")
    rdrop: float = Field(0.0, ge=0, description="R-Drop weight: run each batch twice (two dropout masks) and add "
                                                "rdrop × the symmetric KL of the two predictions; 0 = off. Typical 0.5–5.")

    @model_validator(mode="after")
    def _one_strategy_for_the_body(self) -> TuningParams:
        if self.peft is not None and (self.freeze_layers or self.freeze_embeddings or self.train_only_head):
            raise ValueError("peft already freezes the pretrained body; drop freeze_layers/freeze_embeddings/train_only_head")
        if self.strategy_network is not None:
            others = [name for name in ("peft", "sequence", "continual", "adversarial")
                      if getattr(self, name) is not None]
            others += [name for name in ("freeze_layers", "freeze_embeddings", "train_only_head", "rdrop")
                       if getattr(self, name)]
            if others:
                raise ValueError(f"strategy_network brings its own LoRA experts and loss; drop {', '.join(others)}")
        return self
