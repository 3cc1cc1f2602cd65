"""Sentence embeddings from an encoder checkpoint: mean-pooled, unit-length (the all-MiniLM recipe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModel

from lmforge.models.load import load_tokenizer
from lmforge.models.pooling import masked_mean
from lmforge.models.resolve import resolve_model


class SentenceEncoder:
    """`encode(texts)` -> (len(texts), hidden) unit vectors; cosine similarity is then a dot product."""

    def __init__(self, reference: str = "minilm-l6", batch_size: int = 64, max_length: int = 128) -> None:
        path = resolve_model(reference)
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state  # (batch, length, hidden)
            pooled = masked_mean(hidden, batch["attention_mask"])
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        if not chunks:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(chunks)
