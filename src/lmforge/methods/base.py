"""What a tuning method is: the `tuning:` fields it owns and the hooks the pipeline composes.

Every hook does nothing unless a method overrides it, so a method implements only what it changes. The
recipe calls the run-level hooks in order (`check` → `base_path` → `derive_task` → `extend_splits` →
`build_model` → `apply` → `before_fit` → … → `report`); the training loop composes the step-level ones
(`param_groups`, `wrap_loss`, `after_backward`, `batch_order`, `step_stats`) without knowing which method
brought them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic.fields import FieldInfo

#: `loss(model, batch) -> (loss, logits or None)`, the task's and every wrapped one
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, Any]]


@dataclass
class TrainingSession:
    """One training run as its methods see it; the recipe fills it stage by stage. `open_run(directory)` gives
    a saved run's (config, model folder); `load_run(run)` a trained run answering rows (`.task`, `.predict`) — resources
    a method reads without importing the layers that provide them."""

    config: Any
    task: Any
    precision: str
    processes: int
    open_run: Callable[[Path], tuple[Any, Path]]
    load_run: Callable[[str], Any]
    base_path: str | None = None
    splits: Any = None
    tokenizer: Any = None
    model: Any = None
    run_dir: Path | None = None
    data: Any = None  # the loop's FitData: encoded train and validation features
    examples: list = field(default_factory=list)  # the rows the final report scores

    def evaluate_options(self) -> dict:
        """How the run predicts: max length, batch size and precision."""
        train = self.config.train
        return {"max_length": self.config.data.max_length, "batch_size": train.eval_batch_size,
                "precision": train.precision}


def is_set(value: Any) -> bool:
    """Whether a `tuning:` field switches something on (not None, 0 or false)."""
    return value not in (None, 0, False)


class TuningMethod:
    """One entry of `TUNING`, built per run from its `tuning:` section (`self.tuning`)."""

    #: the `tuning:` fields this method owns: name → (type, pydantic Field)
    fields: ClassVar[dict[str, tuple[Any, FieldInfo]]] = {}
    #: fields of other methods it cannot be combined with, and why
    excludes: ClassVar[tuple[str, ...]] = ()
    exclusion_reason: ClassVar[str] = ""
    #: whether FSDP can shard a model this method trains (adapters and experts wrap the body)
    shardable: ClassVar[bool] = True
    #: a `tuning:` setting that switches the method on, for its contract test and docs
    example: ClassVar[dict[str, Any]] = {}
    #: whether it needs the training rows in memory (refused with data.streaming)
    reads_rows_whole: ClassVar[bool] = False
    #: whether `report` scores the saved best model (so the recipe loads it even where validation scores exist)
    reports_on_saved_model: ClassVar[bool] = False

    def __init__(self, tuning: Any) -> None:
        self.tuning = tuning

    @classmethod
    def enabled(cls, tuning: Any) -> bool:
        """Whether the section switches this method on: any of its fields set."""
        return any(is_set(getattr(tuning, name)) for name in cls.fields)

    @classmethod
    def field_name(cls) -> str:
        """The `tuning:` field that names the method in messages (its first)."""
        return next(iter(cls.fields))

    # --- the run, in the order the recipe calls them -----------------------------------------------
    def check(self, session: TrainingSession) -> None:
        """Refuse, in one ConfigError line, what this run cannot do with the method (before the run directory)."""

    def base_path(self, path: str | None, session: TrainingSession) -> str | None:
        """Where the base weights come from (a previous run, for continual learning)."""
        return path

    def derive_task(self, task: Any) -> Any:
        """The task to train: `task` itself, or a new task built from it (the method never mutates it)."""
        return task

    def extend_splits(self, session: TrainingSession) -> None:
        """Add rows to `session.splits` (replay); the rows a method adds are its own to report."""

    def build_model(self, session: TrainingSession) -> torch.nn.Module | None:
        """The model to train when the method builds it itself; None lets the task build it."""
        return None

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        """The model to train: frozen in part, wrapped, or `model` unchanged."""
        return model

    def before_fit(self, session: TrainingSession) -> None:
        """Measure what the method reports before training changes the model."""

    def report_task(self, task: Any) -> Any:
        """The task the final report scores the saved model with, given the one its run directory loads."""
        return task

    def report(self, session: TrainingSession, metrics: dict) -> None:
        """Add the method's part to the final report's `metrics`."""

    # --- the training step, composed by the loop -----------------------------------------------------
    def param_groups(self, model: torch.nn.Module, groups: list[dict], lr: float) -> list[dict]:
        """The optimizer's parameter groups (per-group learning rates, weight decay); `lr`: train.lr."""
        return groups

    def wrap_loss(self, loss: LossFn, task: Any) -> LossFn:
        """The loss the step minimises, built around `loss`."""
        return loss

    def after_backward(self, model: torch.nn.Module, clean_loss: Callable[[], torch.Tensor]) -> None:
        """More gradients after the step's backward pass (`clean_loss()`: the batch's task loss again)."""

    def batch_order(self, task: Any, features: Any, batch_size: int, seed: int, process_index: int,
                    num_processes: int) -> Any | None:
        """The order batches are drawn in; None keeps the default."""
        return None

    def step_stats(self) -> dict[str, float]:
        """Numbers the training log adds to each logged step."""
        return {}
