"""`TUNING`: every tuning method by name, and the `tuning:` config section made from their fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, create_model, model_validator

from lmforge.config.strict import STRICT
from lmforge.errors import ConfigError
from lmforge.methods.adversarial import Adversarial
from lmforge.methods.base import TrainingSession, TuningMethod, is_set
from lmforge.methods.continual.method import Continual
from lmforge.methods.freezing import Freezing
from lmforge.methods.label_smoothing import LabelSmoothing
from lmforge.methods.layerwise_lr_decay import LayerwiseLrDecay
from lmforge.methods.peft.method import Peft
from lmforge.methods.preference.method import Preference
from lmforge.methods.rdrop import RDrop
from lmforge.methods.sequence.method import Sequence
from lmforge.methods.strategy_network.method import StrategyNetwork

TUNING: dict[str, type[TuningMethod]] = {
    "freezing": Freezing,
    "peft": Peft,
    "label_smoothing": LabelSmoothing,
    "rdrop": RDrop,
    "adversarial": Adversarial,
    "continual": Continual,
    "sequence": Sequence,
    "preference": Preference,
    "strategy_network": StrategyNetwork,
    "layerwise_lr_decay": LayerwiseLrDecay,
}


class _Section(BaseModel):
    """Which parameters train and how: each field belongs to one method of TUNING."""

    model_config = STRICT

    @model_validator(mode="after")
    def _methods_combine(self) -> Any:
        for method in TUNING.values():
            if not method.enabled(self):
                continue
            clashing = [name for name in method.excludes if is_set(getattr(self, name))]
            if clashing:
                raise ValueError(f"{method.field_name()} {method.exclusion_reason}; drop {', '.join(clashing)}")
        return self


def _fields() -> dict[str, tuple[Any, Any]]:
    fields: dict[str, tuple[Any, Any]] = {}
    for name, method in TUNING.items():
        shared = fields.keys() & method.fields.keys()
        assert not shared, f"tuning method {name} declares {', '.join(shared)}, which another method owns"
        fields.update(method.fields)
    return fields


TuningParams = create_model("TuningParams", __base__=_Section, **_fields())


def active_methods(tuning: BaseModel) -> list[TuningMethod]:
    """The methods `tuning` switches on, built for one run, in TUNING's order."""
    return [method(tuning) for method in TUNING.values() if method.enabled(tuning)]


def check_methods(methods: list[TuningMethod], session: TrainingSession) -> None:
    """Each method's refusals for this run (one ConfigError line), the data it needs first."""
    for method in methods:
        if method.reads_rows_whole and session.config.data.streaming:
            raise ConfigError(f"data.streaming works without tuning.{method.field_name()} (it reads the training rows "
                              "whole); set data.streaming=false")
        method.check(session)
