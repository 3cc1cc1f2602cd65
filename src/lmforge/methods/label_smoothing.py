"""Label smoothing inside the task's softmax cross-entropy."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod


class LabelSmoothing(TuningMethod):
    fields = {"label_smoothing": (float, Field(0.0, ge=0, lt=1, description="Spread this share of each target's "
                                                                            "probability evenly over all classes "
                                                                            "(cross-entropy tasks)."))}
    example = {"label_smoothing": 0.1}

    def check(self, session: TrainingSession) -> None:
        task = session.task
        if not hasattr(task, "label_smoothing") or getattr(getattr(task, "params", None), "multi_label", False):
            raise ConfigError(f"tuning.label_smoothing needs a softmax cross-entropy loss, which "
                              f"{type(task).__name__} does not use; set it to 0")

    def derive_task(self, task: Any) -> Any:
        smoothed = copy.copy(task)
        smoothed.label_smoothing = self.tuning.label_smoothing
        return smoothed
