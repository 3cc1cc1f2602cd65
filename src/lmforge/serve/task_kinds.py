"""Which runs the task endpoints serve, and the served run's shape (no HTTP code: used without the serve extra)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: task name -> the endpoint that serves it
TASK_ENDPOINTS = {"text-classification": "classify", "prompt-classification": "classify",
                  "image-text-classification": "classify", "token-classification": "ner",
                  "question-answering": "qa", "relevance-scoring": "score",
                  "reward-modeling": "score"}


@dataclass
class ServedTask:
    """A trained run of a non-generating task: `predict(rows)` → one prediction dict per row (a text, or
    {question, context} for QA)."""

    name: str
    task: str  # a TASK_ENDPOINTS key, or "feature-extraction" for an encoder served for embeddings only
    predict: Callable[[list[Any]], list[dict]] | None
    embedder: Any = None  # a SentenceEncoder: /v1/embeddings (encoder models)
