"""Relation extraction: a sentence with two marked entities → a relation label.

Entity markers [E1] [/E1] [E2] [/E2] are added to the tokenizer; the head reads the encoder states at
[E1] and [E2]. Scored by micro-F1 over the relation classes, leaving out `no_relation_label`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import check_labels, sort_labels
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records, write_jsonl
from lmforge.data.relations import MARKERS, RelationExample, mark_entities, read_relations
from lmforge.data.splits import Splits, assemble_splits
from lmforge.errors import DataError
from lmforge.models.labels import saved_labels, set_labels
from lmforge.models.relation_head import HEAD_CONFIG, EntityMarkerClassifier


class RelationExtractionParams(BaseModel):
    model_config = STRICT

    name: Literal["relation-extraction"] = "relation-extraction"
    no_relation_label: str = Field("no_relation", description="The 'no relation' class, left out of micro-F1.")


class RelationExtraction:
    default_metric = "micro_f1"
    loads_quantized = False
    metric_names = ("micro_f1", "micro_precision", "micro_recall", "accuracy")
    #: PEFT would freeze the new entity-marker embeddings, and the head is saved beside the encoder
    supports_peft = False
    supports_rdrop = True
    label_smoothing = 0.0

    def __init__(self, params: RelationExtractionParams, labels: list[str] | None = None):
        self.params = params
        self.labels = list(labels or [])
        self.marker_ids: list[int] = []
        self.vocab_size = 0

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[RelationExample]:
        examples = read_relations(path, data.text_column, data.label_column, errors, labelled)
        if labelled and self.labels:
            examples = check_labels(examples, self.labels, errors, labels_of=lambda e: [e.label])
        return examples

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        def set_labels(train: list[RelationExample]) -> list[str]:
            self.labels = list(data.labels) if data.labels else sort_labels(e.label for e in train)
            return self.labels

        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "jsonl rows with marked entities and a label", key=lambda e: e.label or "",
                               after_train=set_labels)

    def example_from_text(self, text: str, where: str) -> RelationExample:
        try:
            return RelationExample(" ".join(mark_entities({"text": text}, "text").split()), None, where)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None

    def save_examples(self, examples: list[RelationExample], path: Path) -> None:
        write_jsonl(path, [{"text": e.text, "label": e.label} for e in examples])

    def load_examples(self, path: Path) -> list[RelationExample]:
        return [RelationExample(r["text"], r["label"], f"{path}, line {n}") for n, r in read_records(path)]

    # --- model ----------------------------------------------------------------------------------
    def adapt_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Add the entity markers as special tokens (no-op when the saved tokenizer has them)."""
        tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
        self.marker_ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
        self.vocab_size = len(tokenizer)

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None,
                    quantization: dict | None = None) -> PreTrainedModel:  # dtype: cast after; never quantised
        if not self.marker_ids:
            raise RuntimeError("adapt_tokenizer must run before build_model")  # a bug in the caller, not user input
        model = EntityMarkerClassifier.from_pretrained(path, len(self.labels), self.marker_ids[0], self.marker_ids[2],
                                                       self.vocab_size, local_files_only=local_files_only,
                                                       trust_remote_code=trust_remote_code)
        set_labels(model.config, self.labels)
        return model

    def encode(self, examples: list[RelationExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for i, example in enumerate(examples):
            ids = encoded["input_ids"][i]
            if self.marker_ids[0] not in ids or self.marker_ids[2] not in ids:
                raise DataError(f"{example.where}: an entity marker falls past data.max_length={max_length}; raise it")
            feature = {key: encoded[key][i] for key in encoded.keys()}
            if example.label is not None:
                feature["labels"] = index[example.label]
            features.append(feature)
        return features

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(model, batch).float()
        return F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing), logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[RelationExample]) -> list[dict]:
        probabilities = torch.softmax(torch.stack(outputs).float(), dim=-1).tolist()
        return [{"text": e.text, "label": self.labels[int(np.argmax(p))], "probabilities": dict(zip(self.labels, p, strict=True))}
                for e, p in zip(examples, probabilities, strict=True)]

    def score(self, predictions: list[dict], examples: list[RelationExample], train_examples: list[RelationExample]) -> dict:
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support  # (~100 MB: when scored)

        index = {label: i for i, label in enumerate(self.labels)}
        gold = [index[e.label] for e in examples]
        predicted = [index[p["label"]] for p in predictions]
        relations = [i for i, label in enumerate(self.labels) if label != self.params.no_relation_label]
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, labels=relations, average="micro", zero_division=0)
        return {"micro_f1": float(f), "micro_precision": float(p), "micro_recall": float(r),
                "accuracy": float(accuracy_score(gold, predicted)), "count": len(examples)}

    def from_saved(self, model_dir: Path) -> RelationExtraction:
        if not (model_dir / HEAD_CONFIG).is_file():
            raise DataError(f"{model_dir} has no {HEAD_CONFIG}; it was not saved by a relation-extraction run")
        return RelationExtraction(self.params, saved_labels(model_dir))
