"""Token classification (NER): BIO tags per word, sub-word alignment, long sentences in strided windows.

Words are labelled on their first sub-token (others ignored, or all labelled with
`label_all_subtokens`); windows overlap by `stride` tokens and each word's prediction comes from the
window where it sits furthest from an edge. Scores are entity-level (seqeval, CoNLL-style) plus
token accuracy.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.conll import TaggedSentence, read_conll, split_words
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import check_labels
from lmforge.data.params import DataParams
from lmforge.data.readers import detect_format, locate, read_records, write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.errors import ConfigError
from lmforge.models.labels import config_with_labels, saved_labels
from lmforge.models.quantization import pretrained_kwargs

IGNORE = -100


class TokenClassificationParams(BaseModel):
    model_config = STRICT

    name: Literal["token-classification"] = "token-classification"
    tag_scheme: Literal["bio", "iob1", "iobes"] = Field("bio", description="Tagging scheme of the data files (converted to BIO).")
    label_all_subtokens: bool = Field(False, description="Label every sub-token of a word (continuations as I-), not just the first.")
    stride: int = Field(32, ge=0, description="Tokens shared by consecutive windows when a sentence exceeds data.max_length.")


class TokenClassification:
    """A per-token head on an encoder; predictions are entity spans with character offsets."""

    default_metric = "f1"
    loads_quantized = True
    metric_names = ("f1", "precision", "recall", "token_accuracy")
    supports_rdrop = True
    label_smoothing = 0.0

    def __init__(self, params: TokenClassificationParams, labels: list[str] | None = None):
        self.params = params
        self.labels = list(labels or [])

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[TaggedSentence]:
        if detect_format(locate(path), data.format) == "jsonl":
            sentences = self._read_jsonl(Path(path), data, errors, labelled)
        else:
            sentences = read_conll(path, errors, self.params.tag_scheme)
        if labelled and self.labels:
            sentences = check_labels(sentences, self.labels, errors, labels_of=lambda s: s.tags, what="tag")
        return sentences

    def _read_jsonl(self, path: Path, data: DataParams, errors: RowErrors, labelled: bool) -> list[TaggedSentence]:
        sentences = []
        for number, record in read_records(path, "jsonl", errors):
            where = f"{path}, line {number}"
            if "tokens" in record:
                tokens, tags = record["tokens"], record.get("tags", [])
                if labelled and len(tags) != len(tokens):
                    errors.report(where, f"{len(tokens)} tokens but {len(tags)} tags; give one tag per token")
                    continue
                sentences.append(TaggedSentence(list(tokens), list(tags), where))
            elif isinstance(record.get(data.text_column), str) and not labelled:
                sentences.append(split_words(record[data.text_column], where))
            else:
                errors.report(where, "expected {\"tokens\": [...], \"tags\": [...]}" + ("" if labelled else f" or a '{data.text_column}' field"))
        return sentences

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        def set_labels(train: list[TaggedSentence]) -> list[str]:
            found = {tag for s in train for tag in s.tags}
            self.labels = list(data.labels) if data.labels else ["O"] + sorted(found - {"O"}, key=lambda t: (t[2:], t[0]))
            return self.labels

        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "a CoNLL file (token … tag per line) or jsonl with tokens/tags", after_train=set_labels)

    def example_from_text(self, text: str, where: str) -> TaggedSentence:
        return split_words(text, where)

    def save_examples(self, examples: list[TaggedSentence], path: Path) -> None:
        write_jsonl(path, [{"tokens": s.tokens, "tags": s.tags} for s in examples])

    def load_examples(self, path: Path) -> list[TaggedSentence]:
        return [TaggedSentence(r["tokens"], r["tags"], f"{path}, line {n}") for n, r in read_records(path)]

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        config = config_with_labels(path, self.labels, local_files_only, trust_remote_code)
        return AutoModelForTokenClassification.from_pretrained(
            path, config=config, local_files_only=local_files_only, trust_remote_code=trust_remote_code, **pretrained_kwargs(dtype, quantization))

    def encode(self, examples: list[TaggedSentence], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        if not examples:
            return []
        if not tokenizer.is_fast:
            raise ConfigError("token classification needs a fast tokenizer (tokenizer.json) to align words and sub-tokens")
        stride = min(self.params.stride, max_length // 2)
        encoded = tokenizer([s.tokens for s in examples], is_split_into_words=True, truncation=True,
                            max_length=max_length, stride=stride, return_overflowing_tokens=True)
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for f, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
            word_ids = encoded.word_ids(f)
            feature = {key: encoded[key][f] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
            feature["_example"], feature["_word_ids"] = example_index, word_ids
            tags = examples[example_index].tags
            if tags:
                feature["labels"] = align_labels(word_ids, [index[t] for t in tags], self.labels,
                                                 self.params.label_all_subtokens)
            features.append(feature)
        return features

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(model, batch).float()  # (batch, tokens, labels)
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing), logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[TaggedSentence]) -> list[dict]:
        best: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}  # (example, word) -> (margin, probs)
        for logits, feature in zip(outputs, features, strict=True):
            probs = torch.softmax(logits.float(), dim=-1)  # (tokens, labels)
            word_ids = feature["_word_ids"]
            for position, word in enumerate(word_ids):
                if word is None or (position > 0 and word_ids[position - 1] == word):
                    continue  # special token, or not the word's first sub-token
                margin = min(position, len(word_ids) - 1 - position)
                key = (feature["_example"], word)
                if key not in best or margin > best[key][0]:
                    best[key] = (margin, probs[position])
        predictions = []
        for e, sentence in enumerate(examples):
            word_probs = [best.get((e, w)) for w in range(len(sentence.tokens))]
            tags = [self.labels[int(p[1].argmax())] if p else "O" for p in word_probs]
            confidence = [float(p[1].max()) if p else 1.0 for p in word_probs]
            predictions.append({"text": sentence.text, "tokens": sentence.tokens, "tags": tags,
                                "entities": entity_spans(sentence, tags, confidence)})
        return predictions

    def score(self, predictions: list[dict], examples: list[TaggedSentence], train_examples: list[TaggedSentence]) -> dict:
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        gold = [s.tags for s in examples]
        predicted = [p["tags"] for p in predictions]
        tokens = sum(len(g) for g in gold)
        correct = sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True))
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
        per_type = {name: {k: float(v) for k, v in row.items()} for name, row in report.items() if "avg" not in name}
        majority = Counter(t for s in train_examples for t in s.tags).most_common(1)[0][0] if train_examples else "O"
        return {
            "f1": float(f1_score(gold, predicted, zero_division=0)),
            "precision": float(precision_score(gold, predicted, zero_division=0)),
            "recall": float(recall_score(gold, predicted, zero_division=0)),
            "token_accuracy": correct / max(tokens, 1),
            "count": len(examples),
            "per_class": per_type,
            "majority_baseline": {"f1": 0.0, "token_accuracy": sum(t == majority for g in gold for t in g) / max(tokens, 1),
                                  "label": majority},
        }

    def from_saved(self, model_dir: Path) -> TokenClassification:
        return TokenClassification(self.params, saved_labels(model_dir))


def align_labels(word_ids: list[int | None], word_labels: list[int], labels: list[str], label_all: bool) -> list[int]:
    """Sub-token labels from word labels: the first sub-token carries the word's label, the rest IGNORE
    (or, with `label_all`, the word's label with B- turned into I-).

    >>> align_labels([None, 0, 0, 1, None], [1, 0], ["O", "B-PER", "I-PER"], False)
    [-100, 1, -100, 0, -100]
    """
    inside = {i: labels.index("I-" + tag[2:]) for i, tag in enumerate(labels)
              if tag.startswith("B-") and "I-" + tag[2:] in labels}
    aligned, previous = [], None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORE)
        elif word != previous:
            aligned.append(word_labels[word])
        else:
            aligned.append(inside.get(word_labels[word], word_labels[word]) if label_all else IGNORE)
        previous = word
    return aligned


def entity_spans(sentence: TaggedSentence, tags: list[str], confidence: list[float]) -> list[dict]:
    """Entities as {type, text, start, end, score} with character offsets into `sentence.text`."""
    from seqeval.metrics.sequence_labeling import get_entities

    spans = []
    for kind, first, last in get_entities(tags):
        start, end = sentence.offsets[first][0], sentence.offsets[last][1]
        score = sum(confidence[first:last + 1]) / (last - first + 1)
        spans.append({"type": kind, "text": sentence.text[start:end], "start": start, "end": end, "score": round(score, 4)})
    return spans
