"""Preference tuning of a generation task: DPO, IPO, SimPO, ORPO or KTO on preference rows, full fine-tuning or
PEFT; the reference (DPO, IPO, KTO) is the base with its adapters off under PEFT, else log-probs computed once
before training and kept in the run directory (resume reuses them), or a frozen copy where asked."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.files import atomic_write_text
from lmforge.methods.base import TrainingSession, TuningMethod
from lmforge.methods.preference.params import PreferenceParams

REFERENCE_FILE = "reference_logps.json"  # in the run directory: example → the reference's log-probs


class Preference(TuningMethod):
    fields = {"preference": (PreferenceParams | None, Field(None, description="Preference tuning of a generation "
                                                                              "task on {prompt, chosen, rejected} rows "
                                                                              "(KTO: {prompt, completion, label}): "
                                                                              "{method: dpo|ipo|simpo|orpo|kto, "
                                                                              "beta: 0.1}; null = off."))}
    excludes = ("sequence", "strategy_network", "continual")
    exclusion_reason = "trains on preference rows with its own loss"
    example = {"preference": {"method": "dpo"}}

    def __init__(self, tuning: Any) -> None:
        super().__init__(tuning)
        self.task: Any = None
        self.before: dict[str, float] = {}  # held-out scores of the model before training

    def check(self, session: TrainingSession) -> None:
        if getattr(getattr(session.task, "params", None), "name", None) != "generation":
            raise ConfigError(f"tuning.preference trains generation tasks (task: generation), not "
                              f"{session.config.task.name}")
        params, config = self.tuning.preference, session.config
        if config.data.streaming and params.uses_reference and config.tuning.peft is None and params.reference != "copy":
            raise ConfigError(f"data.streaming: tuning.preference.method {params.method} without PEFT caches the "
                              "reference's log-probs of every training row before training; train LoRA (tuning.peft: "
                              "its reference is the base, adapters off), set tuning.preference.reference: copy, or "
                              "set data.streaming=false")

    def derive_task(self, task: Any) -> Any:
        from lmforge.methods.preference.task import PreferenceTask

        self.task = PreferenceTask(task, self.tuning.preference)
        return self.task

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        params = self.tuning.preference
        if not params.uses_reference:
            return model
        if hasattr(model, "disable_adapter"):  # PEFT: the base with the adapters off, no second copy
            self.task.reference = adapters_off(self.task)
        elif params.reference == "copy":
            frozen = copy.deepcopy(model).eval().requires_grad_(False)
            self.task.reference = lambda model, batch: _no_grad_pair(self.task, frozen, batch)
        return model

    def before_fit(self, session: TrainingSession) -> None:
        """The reference's log-probs where they are cached, then the held-out scores before training (the report
        shows them beside the trained model's)."""
        self._cache_reference(session)
        self.before = self._scores_now(session)

    def _scores_now(self, session: TrainingSession) -> dict[str, float]:
        from lmforge.evaluate.inference import predict

        data = session.data
        if not data.validation_features:
            return {}
        options = session.evaluate_options()
        predictions = predict(self.task, session.model, data.validation_features, session.splits.validation,
                              options["batch_size"], session.tokenizer.pad_token_id, options["precision"])
        return self.task.score(predictions, session.splits.validation, [])

    def report(self, session: TrainingSession, metrics: dict) -> None:
        if self.before:
            metrics["before_training"] = self.before

    def _cache_reference(self, session: TrainingSession) -> None:
        """The cached reference: log-probs of every split's rows under the model before training, written to the
        run directory once (a resumed run reads them back), then carried in the features."""
        params = self.tuning.preference
        if not params.uses_reference or self.task.reference is not None:
            return
        path = Path(session.run_dir) / REFERENCE_FILE
        if path.is_file():
            cached = {where: tuple(pair) for where, pair in json.loads(path.read_text(encoding="utf-8")).items()}
        else:
            cached = reference_log_probs(self.task, session.model, session.splits, session.tokenizer,
                                         session.config.data.max_length, session.config.train.eval_batch_size)
            atomic_write_text(path, json.dumps(cached) + "\n")
        self.task.cached = cached
        for features, examples in ((session.data.train_features, session.splits.train),
                                   (session.data.validation_features, session.splits.validation)):
            for feature in features:
                feature["ref_chosen"], feature["ref_other"] = cached[examples[feature["_example"]].where]

    def report_task(self, task: Any) -> Any:
        """The saved model's generation task trained on preferences again, with this run's reference."""
        from lmforge.methods.preference.task import PreferenceTask

        scoring = PreferenceTask(task, self.tuning.preference)
        scoring.cached, scoring.reference = self.task.cached, self.task.reference
        return scoring

    def step_stats(self) -> dict[str, float]:
        return dict(self.task.stats) if self.task is not None else {}


def _no_grad_pair(task: Any, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        first, second, *_ = task.log_probs(model, batch)
    return first, second


def adapters_off(task: Any):
    """The reference of a PEFT run: the same model with its adapters switched off."""
    def reference(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        peft = getattr(model, "module", model)  # under DDP
        with peft.disable_adapter():
            return _no_grad_pair(task, model, batch)
    return reference


def reference_log_probs(task: Any, model: torch.nn.Module, splits: Any, tokenizer: Any, max_length: int,
                        batch_size: int) -> dict[str, tuple[float, float]]:
    """Every split row's reference log-probs (the two sequences' sums), by the row's `where`."""
    from lmforge.data.batching import pad_batch
    from lmforge.models.modes import eval_mode

    device = next(model.parameters()).device
    cached: dict[str, tuple[float, float]] = {}
    with eval_mode(model):
        for examples in (splits.train, splits.validation, splits.test):
            features = task.encode(list(examples), tokenizer, max_length)
            for start in range(0, len(features), batch_size):
                chunk = features[start:start + batch_size]
                batch = {k: v.to(device) for k, v in pad_batch(chunk, tokenizer.pad_token_id).items()}
                first, second = _no_grad_pair(task, model, batch)
                for feature, a, b in zip(chunk, first.tolist(), second.tolist(), strict=True):
                    cached[examples[feature["_example"]].where] = (a, b)
    return cached
