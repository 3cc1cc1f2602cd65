"""Extractive question answering (SQuAD v1.1/v2.0): question + context windows, best span by n-best search.

Contexts longer than `data.max_length` are cut into windows overlapping by `doc_stride` tokens; a
window that does not hold the whole answer is labelled with the [CLS] position (no answer here).
At prediction time the best-scoring span over all windows wins; with `allow_no_answer` the empty
answer wins when the null score beats it by more than `no_answer_threshold`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import AutoModelForQuestionAnswering, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.data.readers import write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.data.squad import QAExample, read_qa
from lmforge.errors import ConfigError, DataError
from lmforge.metrics.squad import squad_scores
from lmforge.models.quantization import pretrained_kwargs


class QuestionAnsweringParams(BaseModel):
    model_config = STRICT

    name: Literal["question-answering"] = "question-answering"
    doc_stride: int = Field(64, ge=0, description="Tokens shared by consecutive context windows.")
    max_answer_length: int = Field(30, gt=0, description="Longest answer span, in tokens.")
    n_best: int = Field(20, gt=0, description="Start and end candidates searched per window.")
    allow_no_answer: bool = Field(False, description="SQuAD v2: predict the empty answer when the null score wins.")
    no_answer_threshold: float = Field(0.0, description="Null score minus best span score above which the answer is empty.")
    question_column: str = Field("question", description="jsonl field holding the question.")
    context_column: str = Field("context", description="jsonl field holding the context (e.g. 'passage').")
    answers_column: str = Field("answers", description="jsonl field holding the answers: a list, SQuAD's dict, or one string.")
    no_answer_text: str | None = Field(None, description="An answer text that marks the question unanswerable (e.g. 'unknown').")


class QuestionAnswering:
    """A start/end span head on an encoder."""

    default_metric = "f1"
    loads_quantized = True
    metric_names = ("f1", "exact_match", "has_answer_f1", "has_answer_exact_match", "no_answer_exact_match")
    label_smoothing = 0.0  # over token positions

    def __init__(self, params: QuestionAnsweringParams, labels: list[str] | None = None):
        self.params = params
        self.labels: list[str] = []

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[QAExample]:
        columns = (self.params.question_column, self.params.context_column, self.params.answers_column)
        return read_qa(path, errors, labelled, columns, self.params.no_answer_text)

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "SQuAD JSON or jsonl rows {question, context, answers}")

    def example_from_text(self, text: str, where: str) -> QAExample:
        raise DataError(f"{where}: question answering needs JSON lines with 'question' and 'context'")

    def save_examples(self, examples: list[QAExample], path: Path) -> None:
        write_jsonl(path, [{"id": e.id, "question": e.question, "context": e.context,
                            "answers": [{"text": t, "answer_start": s} for t, s in e.answers or []]} for e in examples])

    def load_examples(self, path: Path) -> list[QAExample]:
        return read_qa(path)

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        return AutoModelForQuestionAnswering.from_pretrained(path, local_files_only=local_files_only,
                                                             trust_remote_code=trust_remote_code, **pretrained_kwargs(dtype, quantization))

    def encode(self, examples: list[QAExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        if not examples:
            return []
        if not tokenizer.is_fast:
            raise ConfigError("question answering needs a fast tokenizer (tokenizer.json) for character offsets")
        encoded = tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                            max_length=max_length, stride=min(self.params.doc_stride, max_length // 4),
                            return_overflowing_tokens=True, return_offsets_mapping=True)
        features = []
        for f, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence_ids = encoded.sequence_ids(f)
            offsets = [tuple(o) if sequence_ids[i] == 1 else None for i, o in enumerate(encoded["offset_mapping"][f])]
            feature = {key: encoded[key][f] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
            feature["_example"], feature["_offsets"] = example_index, offsets
            answers = examples[example_index].answers
            if answers:
                text, start = answers[0]
                feature["start_positions"], feature["end_positions"] = span_positions(offsets, start, start + len(text))
            elif answers is not None:  # unanswerable: point at [CLS]
                feature["start_positions"] = feature["end_positions"] = 0
            features.append(feature)
        return features

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
        output = model(**inputs)
        return torch.stack([output.start_logits, output.end_logits], dim=-1)  # (batch, tokens, 2)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(model, batch).float()
        smoothing = self.label_smoothing
        loss = (F.cross_entropy(logits[..., 0], batch["start_positions"], label_smoothing=smoothing) +
                F.cross_entropy(logits[..., 1], batch["end_positions"], label_smoothing=smoothing)) / 2
        return loss, logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[QAExample]) -> list[dict]:
        best: dict[int, tuple[float, int, int]] = {}  # example -> (score, start char, end char)
        null: dict[int, float] = {}
        for logits, feature in zip(outputs, features, strict=True):
            e = feature["_example"]
            start_logits, end_logits = logits[:, 0].tolist(), logits[:, 1].tolist()
            null[e] = min(null.get(e, float("inf")), start_logits[0] + end_logits[0])
            span = best_span(start_logits, end_logits, feature["_offsets"], self.params.n_best, self.params.max_answer_length)
            if span and (e not in best or span[0] > best[e][0]):
                best[e] = span
        predictions = []
        for e, example in enumerate(examples):
            score, start, end = best.get(e, (float("-inf"), 0, 0))
            empty = self.params.allow_no_answer and null.get(e, float("-inf")) - score > self.params.no_answer_threshold
            answer = "" if empty or e not in best else example.context[start:end]
            predictions.append({"id": example.id, "question": example.question, "answer": answer,
                                "start": None if not answer else start, "end": None if not answer else end,
                                "score": round(score, 4) if e in best else None})
        return predictions

    def score(self, predictions: list[dict], examples: list[QAExample], train_examples: list[QAExample]) -> dict:
        scores = squad_scores([p["answer"] for p in predictions], [[t for t, _ in e.answers or []] for e in examples])
        return scores | {"count": len(examples)}

    def from_saved(self, model_dir: Path) -> QuestionAnswering:
        return QuestionAnswering(self.params)


def span_positions(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """Token positions of the answer [start_char, end_char) in one window; (0, 0) when the window does not
    hold the whole answer.

    >>> span_positions([None, None, (0, 3), (4, 9), (10, 15), None], 4, 15)
    (3, 4)
    """
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    first = next(i for i in context if offsets[i][1] > start_char)
    last = max(i for i in context if offsets[i][0] < end_char)
    return first, last


def best_span(start_logits: list[float], end_logits: list[float], offsets: list[tuple[int, int] | None],
              n_best: int, max_answer_length: int) -> tuple[float, int, int] | None:
    """(score, start char, end char) of the best valid span among the top-n starts and ends of one window."""
    def top(scores: list[float]) -> list[int]:
        return sorted(range(len(scores)), key=lambda i: -scores[i])[:n_best]

    found = None
    for s in top(start_logits):
        for e in top(end_logits):
            if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            score = start_logits[s] + end_logits[e]
            if found is None or score > found[0]:
                found = (score, offsets[s][0], offsets[e][1])
    return found
