"""What a decoding strategy returns for each prompt."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One output sequence: its new tokens (without the stop token) and its score.

    `score` is the strategy's ranking score: the mean log-probability per token for greedy and
    sampling, the length-penalised sum for beam search. `steps` holds per-token explanations when asked for.
    With `decode.image_gate`, `image_relevant` / `image_relevance` hold the gate's decision on the prompt's image."""

    tokens: list[int]
    score: float
    steps: list[dict] = field(default_factory=list)
    image_relevant: bool | None = None
    image_relevance: float | None = None

    def gate_fields(self) -> dict:
        """The gate's decision as output fields ({} when no gate judged the prompt's image)."""
        if self.image_relevance is None:
            return {}
        return {"image_relevant": self.image_relevant, "image_relevance": round(self.image_relevance, 4)}
