"""Text classification, single-label (softmax) or multi-label (sigmoid per label)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lmforge.config.strict import STRICT
from lmforge.data.arrow import ArrowRows, FeatureRows, record_source, tokenised, tokenizer_fingerprint
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample, check_labels, read_examples
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records, write_jsonl
from lmforge.data.splits import Splits, read_splits
from lmforge.metrics.classification import majority_label, multi_label_metrics, single_label_metrics
from lmforge.models.labels import config_with_labels, saved_labels
from lmforge.models.quantization import pretrained_kwargs


class TextClassificationParams(BaseModel):
    model_config = STRICT

    name: Literal["text-classification"] = "text-classification"
    multi_label: bool = Field(False, description="Each text may carry several labels (sigmoid per label).")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Multi-label: a label is predicted when its probability exceeds this.")


class TextClassification:
    """Sequence classification head on any HF encoder or decoder."""

    default_metric = "accuracy"
    loads_quantized = True
    label_smoothing = 0.0  # set from tuning.label_smoothing (methods/label_smoothing.py)
    metric_names = ("accuracy", *(f"{avg}_{m}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")))

    def __init__(self, params: TextClassificationParams, labels: list[str] | None = None):
        self.params = params
        self.supports_rdrop = not params.multi_label  # R-Drop compares softmax distributions
        self.labels = list(labels or [])
        self.num_proc = 1  # processes tokenising an Arrow split (data.num_proc)

    # --- data -----------------------------------------------------------------------------------
    def read_splits(self, data: DataParams, seed: int) -> Splits:
        splits = read_splits(data, seed, multi_label=self.params.multi_label)
        self.labels, self.num_proc = splits.labels, data.num_proc
        return splits

    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[TextExample]:
        examples = read_examples(path, data, self.params.multi_label, errors, require_labels=labelled)
        return check_labels(examples, self.labels, errors) if labelled else examples

    def example_from_text(self, text: str, where: str) -> TextExample:
        return TextExample(text=text, text_pair=None, labels=(), where=where)

    def save_examples(self, examples: list[TextExample], path: Path) -> None:
        if isinstance(examples, ArrowRows):  # a large split: where its rows come from, not a copy
            record_source(examples, path)
            return
        write_jsonl(path, [{"text": ex.text, "labels": list(ex.labels)}
                           | ({"text_pair": ex.text_pair} if ex.text_pair is not None else {}) for ex in examples])

    def load_examples(self, path: Path) -> list[TextExample]:
        return [TextExample(r["text"], r.get("text_pair"), tuple(r["labels"]), f"{path}, line {n}")
                for n, r in read_records(path)]

    def encode(self, examples: list[TextExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        if isinstance(examples, ArrowRows):
            return self._encode_arrow(examples, tokenizer, max_length)
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

    def _encode_arrow(self, rows: ArrowRows, tokenizer: PreTrainedTokenizerBase, max_length: int) -> FeatureRows:
        """The features of an Arrow split, tokenised by datasets' map and cached (see data.arrow)."""
        from datasets import Features, Sequence, Value

        index = {label: i for i, label in enumerate(self.labels)}
        paired = rows.table[0]["text_pair"] is not None
        keys = list(tokenizer("a", "b" if paired else None).keys())

        def encode_batch(columns: dict) -> dict:
            encoded = tokenizer(columns["text"], columns["text_pair"] if paired else None, truncation=True,
                                max_length=max_length)
            out = {key: encoded[key] for key in keys}
            if self.params.multi_label:
                out["labels"] = [[1.0 if label in present else 0.0 for label in self.labels]
                                 for present in map(set, columns["labels"])]
            else:
                out["labels"] = [index[row[0]] for row in columns["labels"]]
            out["length"] = [len(ids) for ids in encoded["input_ids"]]
            return out
        types = {"input_ids": Sequence(Value("int32"))} | {k: Sequence(Value("int8")) for k in keys if k != "input_ids"}
        types["labels"] = Sequence(Value("float32")) if self.params.multi_label else Value("int64")
        key = {"tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length, "labels": self.labels,
               "multi_label": self.params.multi_label, "keys": keys}
        return tokenised(rows, encode_batch, Features(types | {"length": Value("int32")}), key, self.num_proc)

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        config = config_with_labels(path, self.labels, local_files_only, trust_remote_code)
        config.problem_type = "multi_label_classification" if self.params.multi_label else "single_label_classification"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=local_files_only, trust_remote_code=trust_remote_code, **pretrained_kwargs(dtype, quantization))
        if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
            model.config.pad_token_id = model.config.eos_token_id  # decoder-only models pool on the last non-pad token
        return model

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(model, batch).float()  # (batch, labels); loss in fp32 even under autocast
        labels = batch["labels"]
        if self.params.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float()), logits
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing), logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[TextExample]) -> list[dict]:
        logits = torch.stack(outputs).float()  # (examples, labels): one feature per example
        if self.params.multi_label:
            rows = torch.sigmoid(logits).tolist()
            decided = [{"labels": [self.labels[j] for j, p in enumerate(row) if p > self.params.threshold]} for row in rows]
        else:
            rows = torch.softmax(logits, dim=-1).tolist()
            decided = [{"label": self.labels[int(np.argmax(row))]} for row in rows]
        return [{"text": ex.text} | ({"text_pair": ex.text_pair} if ex.text_pair is not None else {}) | decision
                | {"probabilities": dict(zip(self.labels, row, strict=True))}
                for ex, decision, row in zip(examples, decided, rows, strict=True)]

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

    def from_saved(self, model_dir: Path) -> TextClassification:
        return TextClassification(self.params, saved_labels(model_dir))
