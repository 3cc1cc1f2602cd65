"""Sequence-level training of a generation task on its own decoded outputs: MRT, SCST or GRPO with rewards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import LossFn, TrainingSession, TuningMethod
from lmforge.methods.sequence.params import SequenceParams
from lmforge.metrics.rewards import check_reward_runs, reads_prompts


class Sequence(TuningMethod):
    fields = {"sequence": (SequenceParams | None, Field(None, description="Sequence-level training of a generation "
                                                                          "task on its own decoded outputs: {method: "
                                                                          "mrt|scst|grpo, rewards: [{name: chrf}], "
                                                                          "samples: 4}; null = cross-entropy."))}
    example = {"sequence": {"method": "mrt", "samples": 2, "rewards": [{"name": "chrf"}]}}

    def __init__(self, tuning: Any) -> None:
        super().__init__(tuning)
        self.objective: Any = None  # the SequenceObjective, once the loss is wrapped
        self.load_run = None
        self.prompt_of: dict[tuple[int, ...], Any] = {}

    def check(self, session: TrainingSession) -> None:
        if getattr(getattr(session.task, "params", None), "name", None) != "generation":
            raise ConfigError("tuning.sequence trains generation tasks (task: generation)")
        if session.task.encoder_decoder:
            raise ConfigError("tuning.sequence supports decoder-only models for now")
        check_reward_runs(self.tuning.sequence.rewards, lambda run: session.open_run(Path(run))[0].task.name)
        self.load_run = session.load_run

    def before_fit(self, session: TrainingSession) -> None:
        """Each training prompt as its row wrote it, by its tokens (what a reward model reads; kept only when a
        reward reads prompts)."""
        features, examples = session.data.train_features, session.splits.train
        if reads_prompts(self.tuning.sequence.rewards) and isinstance(features, list) and isinstance(examples, list):
            for feature in features:
                example = examples[feature["_example"]]
                written = example.source if example.messages is None else example.messages
                self.prompt_of[tuple(feature["input_ids"][:feature["_prompt_length"]])] = written

    def wrap_loss(self, loss: LossFn, task: Any) -> LossFn:
        from lmforge.methods.sequence.train import (
            SequenceObjective,  # (the decoding engine: imported where used)
        )

        self.objective = SequenceObjective(task, self.tuning.sequence, self.load_run, token_loss=loss)
        self.objective.prompt_of = self.prompt_of
        return self.objective

    def step_stats(self) -> dict[str, float]:
        return self.objective.stats if self.objective is not None else {}
