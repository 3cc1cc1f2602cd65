"""The multi-task strategy network: one LoRA expert per task, a router that picks the expert per input."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession, TuningMethod
from lmforge.methods.strategy_network.params import StrategyNetworkParams


class StrategyNetwork(TuningMethod):
    fields = {"strategy_network": (StrategyNetworkParams | None, Field(
        None, description="Multi-task strategy network for a generation task over rows from several tasks (their "
                          "'task' field): one LoRA expert per task and a router that picks the expert per input from "
                          "its hidden state, e.g. {r: 8, temperature: 2.0}; null = off."))}
    excludes = ("peft", "sequence", "continual", "adversarial", "freeze_layers", "freeze_embeddings",
                "train_only_head", "rdrop")
    exclusion_reason = "brings its own LoRA experts and loss"
    shardable = False
    reads_rows_whole = True
    example = {"strategy_network": {"r": 4}}

    def check(self, session: TrainingSession) -> None:
        if session.processes > 1:
            raise ConfigError(f"tuning.strategy_network trains in one process ({session.processes} were launched: "
                              "its experts take turns per batch, which data-parallel gradients cannot follow yet); "
                              "run it without accelerate launch")

    def derive_task(self, task: Any) -> Any:
        from lmforge.methods.strategy_network.task import with_strategy_network  # (imported where used)

        self.task = with_strategy_network(task, self.tuning.strategy_network)  # (generation tasks only)
        return self.task

    def apply(self, model: torch.nn.Module, session: TrainingSession) -> torch.nn.Module:
        from lmforge.methods.strategy_network.experts import attach_experts

        return attach_experts(model, self.tuning.strategy_network, session.task.experts)

    def batch_order(self, task: Any, features: Any, batch_size: int, seed: int, process_index: int,
                    num_processes: int) -> Any:
        return task.batch_order(features, batch_size, seed, process_index, num_processes)

    def step_stats(self) -> dict[str, float]:
        return self.task.step_stats  # the router's loss and accuracy, set by the task's loss
