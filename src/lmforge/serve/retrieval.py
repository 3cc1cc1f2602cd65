"""Retrieval-augmented chat: the FAQ entries nearest to the user's last message, by sentence embeddings
(MiniLM by default), are put in front of the conversation as a system message, so the model answers
from them. `lmforge serve … --faq FILE` turns it on; each answer names what was retrieved.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.data.faq import read_faq
from lmforge.data.grounding import INSTRUCTIONS, FaqEntry, grounding_message
from lmforge.models.sentence import SentenceEncoder


class FaqRetriever:
    """Finds the FAQ entries nearest to a text and grounds a chat in them."""

    def __init__(self, entries: list[FaqEntry], encoder: SentenceEncoder, top_k: int = 2, min_score: float = 0.3,
                 instructions: str = INSTRUCTIONS) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.entries, self.encoder, self.top_k, self.min_score = entries, encoder, top_k, min_score
        self.instructions = instructions
        # a question is found by its own words and by its answer's
        self.keys = encoder.encode([f"{e.question} {e.answer}" for e in entries])

    @classmethod
    def from_file(cls, path: str | Path, encoder: str = "minilm-l6", top_k: int = 2, min_score: float = 0.3) -> FaqRetriever:
        return cls(read_faq(path), SentenceEncoder(encoder), top_k, min_score)

    def search(self, text: str, k: int | None = None) -> list[tuple[float, FaqEntry]]:
        """The `k` (default top_k) nearest entries with a cosine similarity of at least min_score, nearest first."""
        scores = self.keys @ self.encoder.encode([text])[0]
        order = scores.argsort(descending=True)[: k or self.top_k].tolist()
        return [(float(scores[i]), self.entries[i]) for i in order if float(scores[i]) >= self.min_score]

    def ground(self, messages: list[dict]) -> tuple[list[dict], list[dict]]:
        """(messages with the FAQ entries for the last user message in the system message, what was retrieved)."""
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        hits = self.search(last) if last else []
        system = grounding_message([entry for _, entry in hits], self.instructions)
        if messages and messages[0]["role"] == "system":
            messages = [{"role": "system", "content": f"{messages[0]['content']}\n\n{system}"}, *messages[1:]]
        else:
            messages = [{"role": "system", "content": system}, *messages]
        retrieved = [{"question": e.question, "answer": e.answer, "score": round(score, 4)} for score, e in hits]
        return messages, retrieved
