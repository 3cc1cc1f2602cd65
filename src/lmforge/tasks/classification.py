"""Text classification, single-label (softmax) or multi-label (sigmoid per label)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lmforge.data.labelled import TextExample
from lmforge.data.params import DataParams
from lmforge.data.splits import Splits, read_splits
from lmforge.metrics.classification import majority_label, multi_label_metrics, single_label_metrics


class TextClassificationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["text-classification"] = "text-classification"
    multi_label: bool = Field(False, description="Each text may carry several labels (sigmoid per label).")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Multi-label: a label is predicted when its probability exceeds this.")


class TextClassification:
    """Sequence classification head on any HF encoder or decoder."""

    default_metric = "accuracy"
    metric_names = ("accuracy", *(f"{avg}_{m}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")))

    def __init__(self, params: TextClassificationParams, labels: list[str] | None = None):
        self.params = params
        self.labels = list(labels or [])

    # --- data -----------------------------------------------------------------------------------
    def read_splits(self, data: DataParams, seed: int) -> Splits:
        splits = read_splits(data, seed, multi_label=self.params.multi_label)
        self.labels = splits.labels
        return splits

    def encode(self, examples: list[TextExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        texts = [ex.text for ex in examples]
        pairs = [ex.text_pair for ex in examples] if examples and examples[0].text_pair is not None else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for i, ex in enumerate(examples):
            feature = {key: encoded[key][i] for key in encoded.keys()}
            if ex.labels:
                if self.params.multi_label:
                    hot = [0.0] * len(self.labels)
                    for label in ex.labels:
                        hot[index[label]] = 1.0
                    feature["labels"] = hot
                else:
                    feature["labels"] = index[ex.labels[0]]
            features.append(feature)
        return features

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool) -> PreTrainedModel:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        config.num_labels = len(self.labels)
        config.id2label = dict(enumerate(self.labels))
        config.label2id = {label: i for i, label in enumerate(self.labels)}
        config.problem_type = "multi_label_classification" if self.params.multi_label else "single_label_classification"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
            model.config.pad_token_id = model.config.eos_token_id  # decoder-only models pool on the last non-pad token
        return model

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()  # (batch, labels); loss in fp32 even under autocast
        labels = batch["labels"]
        if self.params.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float()), logits
        return F.cross_entropy(logits, labels), logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, logits: torch.Tensor) -> list[dict]:
        logits = logits.float()
        if self.params.multi_label:
            probs = torch.sigmoid(logits).tolist()
            return [{"labels": [self.labels[j] for j, p in enumerate(row) if p > self.params.threshold],
                     "probabilities": dict(zip(self.labels, row, strict=True))} for row in probs]
        probs = torch.softmax(logits, dim=-1).tolist()
        return [{"label": self.labels[int(np.argmax(row))], "probabilities": dict(zip(self.labels, row, strict=True))}
                for row in probs]

    def score(self, predictions: list[dict], examples: list[TextExample], train_examples: list[TextExample]) -> dict:
        index = {label: i for i, label in enumerate(self.labels)}
        if self.params.multi_label:
            gold = self._indicators([ex.labels for ex in examples])
            predicted = self._indicators([p["labels"] for p in predictions])
            metrics = multi_label_metrics(predicted, gold, self.labels)
            train = self._indicators([ex.labels for ex in train_examples])
            majority = (train.mean(axis=0) > 0.5).astype(int)
            baseline = multi_label_metrics(np.tile(majority, (len(examples), 1)), gold, self.labels)
        else:
            gold_ids = [index[ex.labels[0]] for ex in examples]
            metrics = single_label_metrics([index[p["label"]] for p in predictions], gold_ids, self.labels)
            majority = majority_label([index[ex.labels[0]] for ex in train_examples])
            baseline = single_label_metrics([majority] * len(examples), gold_ids, self.labels)
            baseline["label"] = self.labels[majority]
        metrics["majority_baseline"] = {k: baseline[k] for k in ("accuracy", "macro_f1", "micro_f1") } | (
            {"label": baseline["label"]} if "label" in baseline else {})
        return metrics

    def _indicators(self, label_sets: list) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        matrix = np.zeros((len(label_sets), len(self.labels)), dtype=int)
        for row, labels in enumerate(label_sets):
            for label in labels:
                matrix[row, index[label]] = 1
        return matrix

    @classmethod
    def from_saved(cls, model_dir: Path, params: TextClassificationParams) -> TextClassification:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        return cls(params, labels)
