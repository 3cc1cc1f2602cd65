"""The contract every task implements, so that train/evaluate/predict never branch on a task's name.

Features are dicts of token-id lists (padded per batch); keys starting with "_" are bookkeeping
(which example a window belongs to, word ids, offsets) and never reach the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.data.splits import Splits


class Task(Protocol):
    """Preprocess, head, loss, metrics and postprocessing for one task shape."""

    #: the metric early stopping and "best model" use unless the config names another
    default_metric: str
    #: every validation metric `train.metric` may name (higher is better except for train.loop.LOWER_IS_BETTER)
    metric_names: tuple[str, ...]
    #: the label set (empty for tasks without one)
    labels: list[str]
    #: whether `build_model` loads a bitsandbytes-quantised base (`quantization`); model.quantization needs it
    loads_quantized: bool

    # --- data -----------------------------------------------------------------------------------
    def read_splits(self, data: DataParams, seed: int) -> Splits:
        """Train/validation/test examples per the `data:` section; sets `labels`."""

    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[Any]:
        """Examples from one file (for evaluate and predict), labels checked against `labels`."""

    def example_from_text(self, text: str, where: str) -> Any:
        """An unlabelled example from raw text (predict's stdin)."""

    def save_examples(self, examples: list[Any], path: Path) -> None:
        """Write a split as jsonl into the run directory."""

    def load_examples(self, path: Path) -> list[Any]:
        """Read a split written by `save_examples`."""

    # --- model ----------------------------------------------------------------------------------
    # Optional hook: `adapt_tokenizer(tokenizer)` runs right after the tokenizer loads and before
    # build_model (relation extraction adds its entity-marker tokens there).

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        """Load `path` with this task's head (new head weights are initialised), its weights read in `dtype` where
        the task can (None: as saved), quantised per `quantization` (`models.quantization.quantized_loading`)
        where `loads_quantized`."""

    def encode(self, examples: list[Any], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        """Features (one or more per example) with labels when the examples have them."""

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's scores for a padded batch without labels: (batch, …) or (batch, tokens, …)."""

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, logits) for one padded batch."""

    # --- outputs --------------------------------------------------------------------------------
    # Tasks whose output is text implement `generate(model, features, examples, batch_size, pad_id,
    # precision, progress) -> list[dict]` instead of `forward` + `decode` (see tasks/generation.py).

    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[Any]) -> list[dict]:
        """One prediction dict per example from per-feature model outputs (unpadded)."""

    def score(self, predictions: list[dict], examples: list[Any], train_examples: list[Any]) -> dict:
        """Metrics of predictions against the examples' gold labels, with a majority baseline."""

    def from_saved(self, model_dir: Path) -> Task:
        """This task with its labels restored from a saved model folder."""
