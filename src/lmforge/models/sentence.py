"""Sentence embeddings from an encoder checkpoint: mean-pooled, unit-length (the all-MiniLM recipe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModel

from lmforge.models.device import place
from lmforge.models.load import load_tokenizer
from lmforge.models.pooling import masked_mean
from lmforge.models.resolve import resolve_model


class SentenceEncoder:
    """`encode(texts)` -> (len(texts), hidden) unit vectors; cosine similarity is then a dot product. Built from a
    model reference, or (`of`) from a loaded encoder such as a fine-tuned classifier's body."""

    def __init__(self, reference: str = "minilm-l6", batch_size: int = 64, max_length: int = 128,
                 device: str = "cpu") -> None:
        path = resolve_model(reference)
        self.tokenizer = load_tokenizer(path)
        self.model = place(AutoModel.from_pretrained(path, local_files_only=True).eval(), device)
        self.batch_size, self.max_length = batch_size, max_length

    @classmethod
    def of(cls, model: torch.nn.Module, tokenizer, max_length: int = 128, batch_size: int = 64) -> SentenceEncoder:
        """The encoder inside a task model (its `base_model`: the body under the head)."""
        encoder = cls.__new__(cls)
        body = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT adapter
        encoder.model, encoder.tokenizer = getattr(body, "base_model", body), tokenizer
        encoder.batch_size, encoder.max_length = batch_size, max_length
        return encoder

    @property
    def dimensions(self) -> int:
        return self.model.config.hidden_size

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the texts take (after truncation), for usage reports."""
        return sum(len(ids) for ids in self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"])

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.model.device)
            hidden = self.model(**batch).last_hidden_state  # (batch, length, hidden)
            pooled = masked_mean(hidden, batch["attention_mask"])
            chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        if not chunks:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(chunks)
