"""What a decoding strategy returns for each prompt."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One output sequence: its new tokens (without the stop token) and its score.

    `score` is the strategy's ranking score: the mean log-probability per token for greedy and
    sampling, the length-penalised sum for beam search. `steps` holds per-token explanations when asked for."""

    tokens: list[int]
    score: float
    steps: list[dict] = field(default_factory=list)
