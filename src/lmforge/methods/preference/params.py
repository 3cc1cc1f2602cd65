"""`tuning.preference`: which preference loss, and its knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lmforge.config.strict import STRICT

#: the methods that compare the policy with a reference model (SimPO and ORPO need none)
WITH_REFERENCE = ("dpo", "ipo", "kto")


class PreferenceParams(BaseModel):
    model_config = STRICT

    method: Literal["dpo", "ipo", "simpo", "orpo", "kto"] = Field(
        "dpo", description="dpo (sigmoid loss), ipo, simpo (no reference), orpo (no reference, adds the chosen "
                           "reply's NLL) on {prompt, chosen, rejected} rows; kto on {prompt, completion, label} rows.")
    beta: float | None = Field(None, gt=0, description="The loss's β (ORPO: λ); default as TRL: 0.1, SimPO 2.0.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="dpo, simpo: the share of preferences taken as "
                                                                  "wrong (conservative DPO); 0 = none.")
    gamma: float = Field(0.5, ge=0, description="simpo: the target reward margin γ (TRL's simpo_gamma).")
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of the losses of desirable completions.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of the losses of undesirable completions.")
    reference: Literal["cached", "copy"] = Field(
        "cached", description="dpo, ipo, kto without PEFT: cached (the reference's log-probs computed once before "
                              "training, kept in the run directory) or copy (a frozen copy of the model in memory). "
                              "With tuning.peft the reference is the base with the adapters off, in every case.")

    @model_validator(mode="after")
    def _knobs_of_the_method(self) -> PreferenceParams:
        """A knob of another method set to other than its default is an error (a saved config writes them all)."""
        owners = {"label_smoothing": ("dpo", "simpo"), "gamma": ("simpo",), "desirable_weight": ("kto",),
                  "undesirable_weight": ("kto",)}
        for name, methods in owners.items():
            if self.method not in methods and getattr(self, name) != type(self).model_fields[name].default:
                raise ValueError(f"{name} applies to {' and '.join(methods)}, not {self.method}")
        return self

    @property
    def strength(self) -> float:
        """β as set, else TRL's default for the method."""
        return self.beta if self.beta is not None else 2.0 if self.method == "simpo" else 0.1

    @property
    def uses_reference(self) -> bool:
        return self.method in WITH_REFERENCE

    @property
    def paired(self) -> bool:
        """Whether rows are {prompt, chosen, rejected} (else KTO's {prompt, completion, label})."""
        return self.method != "kto"
