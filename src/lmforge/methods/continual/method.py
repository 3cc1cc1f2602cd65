"""Continual learning: start from a trained run, keep its labels, replay or anchor (EWC) its task, and report
what the run forgot of it beside what it gained on the new one."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import LossFn, TrainingSession, TuningMethod
from lmforge.methods.continual.ewc import (
    ContinualParams,
    EwcPenalty,
    fisher_diagonal,
    grow_head,
    replay_sample,
)

if TYPE_CHECKING:  # (imported where used: reading a config stays free of model code)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmforge.tasks import Task

SUPPORTED_TASKS = ("text-classification",)
REPORTED = ("accuracy", "macro_f1")


@dataclass
class PreviousRun:
    """The run a continual run goes on from: its model, labels, task and data."""

    params: ContinualParams
    directory: Path
    model_path: str
    labels: list[str]
    task: Task
    train: list[Any]
    evaluation_split: str
    evaluation: list[Any]


def open_previous_run(params: ContinualParams, config: Any, open_run: Any) -> PreviousRun:
    """Check the previous run can be continued with `config`'s task (user mistakes are one-line errors);
    `open_run(directory)` gives a saved run's (config, model folder)."""
    from lmforge.data.splits import saved_split
    from lmforge.models.adapters import is_adapter_dir
    from lmforge.models.labels import saved_labels
    from lmforge.tasks import build_task

    directory = Path(params.previous_run)
    if not directory.is_dir():
        raise ConfigError(f"tuning.continual.previous_run: run directory {directory} does not exist")
    previous_config, folder = open_run(directory)
    if config.task.name not in SUPPORTED_TASKS:
        raise ConfigError(f"tuning.continual supports {', '.join(SUPPORTED_TASKS)} for now, not {config.task.name}")
    if previous_config.task.name != config.task.name:
        raise ConfigError(f"tuning.continual.previous_run {directory} trained {previous_config.task.name}, "
                          f"but this config's task is {config.task.name}")
    if is_adapter_dir(folder):
        raise ConfigError(f"tuning.continual.previous_run {directory} saved a PEFT adapter; "
                          f"`lmforge export {directory} --output DIR` and train a new run from that folder instead")
    task = build_task(previous_config.task).from_saved(folder)
    evaluation_split = "test" if saved_split(task, directory, "test") else "validation"
    evaluation = saved_split(task, directory, evaluation_split)
    if not evaluation:
        raise ConfigError(f"tuning.continual.previous_run {directory} saved no test or validation split to measure "
                          "forgetting on")
    return PreviousRun(params, directory, str(folder), saved_labels(folder), task,
                       saved_split(task, directory, "train"), evaluation_split, evaluation)


def extend_splits(previous: PreviousRun, task: Task, splits: Any, seed: int) -> list[Any]:
    """Union of old and new labels (old ones first, in their output order) on `task`; replayed old rows
    appended to the new training split. Returns the replayed rows."""
    task.labels = previous.labels + [label for label in task.labels if label not in previous.labels]
    splits.labels = task.labels
    replayed = replay_sample(previous.train, previous.params.replay, seed)
    splits.train.extend(replayed)
    return replayed


def ewc_penalty(previous: PreviousRun, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                max_length: int) -> EwcPenalty | None:
    """The EWC anchor at the previous model's weights (None when tuning.continual.ewc is 0)."""
    from lmforge.data.batching import pad_batch

    if not previous.params.ewc:
        return None
    rows = replay_sample(previous.train, previous.params.ewc_samples, seed=0)
    features = previous.task.encode(rows, tokenizer, max_length)
    batches = (pad_batch([feature], tokenizer.pad_token_id) for feature in features)
    fisher = fisher_diagonal(model, batches, lambda m, batch: previous.task.loss(m, batch)[0])
    return EwcPenalty(model, fisher, previous.params.ewc)


def grow_to(model: PreTrainedModel, previous: PreviousRun, task: Task) -> None:
    """Give the previous model's head the outputs of `task.labels` (old ones keep their weights)."""
    from lmforge.models.labels import set_labels

    grow_head(model, len(previous.labels), len(task.labels))
    set_labels(model.config, task.labels)


def reported_scores(task: Task, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Any],
                    train: list[Any], max_length: int, batch_size: int, precision: str) -> dict:
    """The REPORTED metrics of `model` (predicting `task.labels`) on `examples` (the new task's)."""
    from lmforge.evaluate.inference import predict_examples

    predictions = predict_examples(task, model, tokenizer, examples, max_length, batch_size, precision)
    scores = task.score(predictions, examples, train)
    return {name: scores[name] for name in REPORTED}


def old_task_scores(previous: PreviousRun, task: Task, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    max_length: int, batch_size: int, precision: str) -> dict:
    """Accuracy and macro-F1 over the old labels of `model` (predicting `task.labels`) on the old task's split;
    `within_old_labels`: the same when the choice is restricted to the old labels (what the model still
    knows of the old task, apart from new labels taking over)."""
    from sklearn.metrics import accuracy_score, f1_score

    from lmforge.evaluate.inference import predict_examples

    examples = previous.evaluation
    predictions = predict_examples(task, model, tokenizer, examples, max_length, batch_size, precision)
    gold = [example.labels[0] for example in examples]

    def scores(predicted: list[str]) -> dict:
        return {"accuracy": float(accuracy_score(gold, predicted)),
                "macro_f1": float(f1_score(gold, predicted, labels=previous.labels, average="macro", zero_division=0))}

    restricted = [max(previous.labels, key=p["probabilities"].get) for p in predictions]
    return scores([p["label"] for p in predictions]) | {"within_old_labels": scores(restricted)}


def forgetting_report(previous: PreviousRun, old_before: dict, old_after: dict, new_before: dict,
                      new_after: dict, replayed: int) -> dict:
    """What the run kept of the old task beside what it gained on the new one (positive forgetting = lost)."""
    metric = REPORTED[0]
    report = {"previous_run": str(previous.directory), "old_task_split": previous.evaluation_split,
              "replayed_rows": replayed, "ewc": previous.params.ewc,
              "old_task": {"before": old_before, "after": old_after,
                           "forgetting": round(old_before[metric] - old_after[metric], 4)},
              "new_task": {"before": new_before, "after": new_after,
                           "gain": round(new_after[metric] - new_before[metric], 4)}}
    within = old_after.get("within_old_labels", {}).get(metric)
    within = f", {within:.4f} choosing among old labels only" if within is not None else ""
    print(f"continual: old task ({previous.evaluation_split} of {previous.directory.name}) {metric} "
          f"{old_before[metric]:.4f} -> {old_after[metric]:.4f}{within} (forgetting {report['old_task']['forgetting']:+.4f}); "
          f"new task {new_before[metric]:.4f} -> {new_after[metric]:.4f} (gain {report['new_task']['gain']:+.4f})",
          file=sys.stdout)
    return report


class Continual(TuningMethod):
    fields = {"continual": (ContinualParams | None, Field(None, description="Go on from a trained run: {previous_run: "
                                                                            "RUN_DIR, replay: N, ewc: λ}; the report "
                                                                            "adds old-task forgetting."))}
    reports_on_saved_model = True  # the old task is scored again with the best model
    reads_rows_whole = True
    example = {"continual": {"previous_run": "RUN_DIR", "replay": 4}}

    def __init__(self, tuning: Any) -> None:
        super().__init__(tuning)
        self.previous: PreviousRun | None = None
        self.replayed: list[Any] = []
        self.penalty: EwcPenalty | None = None
        self.old_before: dict = {}
        self.new_before: dict = {}

    def check(self, session: TrainingSession) -> None:
        config = session.config
        if config.model.quantization != "none":
            raise ConfigError(f"model.quantization {config.model.quantization} works without tuning.continual; "
                              "set model.quantization=none")
        self.previous = open_previous_run(self.tuning.continual, config, session.open_run)

    def base_path(self, path: str | None, session: TrainingSession) -> str | None:
        return self.previous.model_path

    def extend_splits(self, session: TrainingSession) -> None:
        self.replayed = extend_splits(self.previous, session.task, session.splits, session.config.train.seed)

    def build_model(self, session: TrainingSession) -> torch.nn.Module:
        """The previous model, measured on the old task and anchored (EWC) before its head grows to the new labels."""
        previous, options = self.previous, session.evaluate_options()
        model = previous.task.build_model(session.base_path, not session.config.model.allow_network,
                                          session.config.model.trust_remote_code)
        self.old_before = old_task_scores(previous, previous.task, model, session.tokenizer, **options)
        self.penalty = ewc_penalty(previous, model, session.tokenizer, options["max_length"])
        grow_to(model, previous, session.task)
        return model

    def before_fit(self, session: TrainingSession) -> None:
        if session.examples:
            self.new_before = reported_scores(session.task, session.model, session.tokenizer, session.examples,
                                              session.splits.train, **session.evaluate_options())

    def wrap_loss(self, loss: LossFn, task: Any) -> LossFn:
        if self.penalty is None:
            return loss

        def anchored(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
            value, logits = loss(model, batch)
            return value + self.penalty(getattr(model, "module", model)), logits  # (DDP wraps the model)

        return anchored

    def report(self, session: TrainingSession, metrics: dict) -> None:
        old_after = old_task_scores(self.previous, session.task, session.model, session.tokenizer,
                                    **session.evaluate_options())
        new_after = {name: metrics[name] for name in REPORTED}
        metrics["continual"] = forgetting_report(self.previous, self.old_before, old_after, self.new_before,
                                                 new_after, len(self.replayed))
