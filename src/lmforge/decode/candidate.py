"""What a decoding strategy returns for each prompt."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One output sequence: its new tokens (without the stop token) and its score.

    `score` is the strategy's ranking score: the mean log-probability per token for greedy and
    sampling, the length-penalised sum for beam search. `steps` holds per-token explanations when asked for.
    With `decode.image_gate`, `image_relevant` / `image_relevance` hold the gate's decision on the prompt's image;
    with strategy auto, `arm` names the decoding the policy chose."""

    tokens: list[int]
    score: float
    steps: list[dict] = field(default_factory=list)
    image_relevant: bool | None = None
    image_relevance: float | None = None
    arm: str | None = None

    def decision_fields(self) -> dict:
        """What was decided for this output, as output fields: the gate's decision on the prompt's image, the arm
        strategy auto chose ({} when neither applies)."""
        fields: dict = {} if self.arm is None else {"arm": self.arm}
        if self.image_relevance is not None:
            fields |= {"image_relevant": self.image_relevant, "image_relevance": round(self.image_relevance, 4)}
        return fields
