"""The contract every task implements, so that train/evaluate/predict never branch on a task's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.data.params import DataParams
from lmforge.data.splits import Splits


class Task(Protocol):
    """Preprocess, head, loss, metrics and postprocessing for one task shape."""

    #: the metric early stopping and "best model" use unless the config names another
    default_metric: str
    #: every validation metric `train.metric` may name (higher is better unless the name contains "loss")
    metric_names: tuple[str, ...]

    def read_splits(self, data: DataParams, seed: int) -> Splits: ...

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool) -> PreTrainedModel:
        """Load `path` with this task's head (new head weights are initialised)."""

    def encode(self, examples: list[Any], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        """Token ids (and labels when the examples have them) for each example."""

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, logits) for one padded batch."""

    def decode(self, logits: torch.Tensor) -> list[dict]:
        """Predictions (label and probabilities) from logits, one dict per example."""

    def score(self, predictions: list[dict], examples: list[Any], train_examples: list[Any]) -> dict:
        """Metrics of predictions against the examples' gold labels, with a majority baseline."""

    @classmethod
    def from_saved(cls, model_dir: Path, params: Any) -> Task:
        """Rebuild the task from a saved model folder (labels come from its config)."""
