"""Every decoding strategy's own knobs (its `Params`), torch-free so that reading a config or `lmforge --help`
imports no model code. `STRATEGY_PARAMS` is the one list of strategy names: `decode.strategies.STRATEGIES` holds
how each decodes, under the same names."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from lmforge.config.strict import STRICT


class StrategyParams(BaseModel):
    """A strategy's own knobs (fields of the `decode:` section) and where it can run."""

    model_config = STRICT

    description: ClassVar[str] = ""
    llama_cpp: ClassVar[bool] = False  # needs no hidden states, forks or second model
    static_cache: ClassVar[bool] = False  # runs on a cache allocated once (decoder-only)
    continuous: ClassVar[bool] = False  # the server's continuous batching runs it row by row


#: knobs two strategies read: one definition each
TOP_K = Field(None, gt=0, description="sample: draw only from the k most likely tokens; contrastive: candidates per "
                                      "step (default 4).")
NUM_RETURN_SEQUENCES = Field(1, ge=1, description="beam/sample: outputs per prompt.")


class GreedyParams(StrategyParams):
    description = "greedy"
    llama_cpp = static_cache = continuous = True


class SampleParams(StrategyParams):
    description = "sample"
    llama_cpp = static_cache = continuous = True

    temperature: float = Field(1.0, gt=0, description="sample: divide scores by this (< 1 sharper, > 1 flatter).")
    top_k: int | None = TOP_K
    top_p: float | None = Field(None, gt=0, le=1, description="sample: nucleus, the fewest tokens whose probability "
                                                               "reaches p.")
    min_p: float | None = Field(None, ge=0, le=1, description="sample: drop tokens below p × the best token's "
                                                              "probability.")
    typical_p: float | None = Field(None, gt=0, le=1, description="sample: locally typical sampling mass.")
    num_return_sequences: int = NUM_RETURN_SEQUENCES


class BeamParams(StrategyParams):
    description = "beam"
    llama_cpp = True

    num_beams: int = Field(4, ge=1, description="beam: hypotheses kept per prompt.")
    length_penalty: float = Field(1.0, description="beam: finished score = sum log p / length**length_penalty.")
    early_stopping: bool | Literal["never"] = Field(
        False, description="beam: true = stop once num_beams hypotheses finished; false = HF's heuristic; never = exact.")
    num_beam_groups: int = Field(1, ge=1, description="beam: >1 = diverse beam search, the beams split into this many "
                                                       "groups (num_beams must be a multiple).")
    diversity_penalty: float = Field(0.0, ge=0, description="beam with groups: subtracted from a token's log-prob per "
                                                             "earlier group that chose it at the same step.")
    num_return_sequences: int = NUM_RETURN_SEQUENCES

    @model_validator(mode="after")
    def _beams_fit(self) -> BeamParams:
        if self.num_beams % self.num_beam_groups:
            raise ValueError(f"num_beams ({self.num_beams}) must be a multiple of num_beam_groups ({self.num_beam_groups})")
        if self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})")
        return self


class ContrastiveParams(StrategyParams):
    description = "contrastive"

    penalty_alpha: float = Field(0.6, ge=0, le=1, description="contrastive: weight of the degeneration penalty "
                                                               "(0 = greedy).")
    top_k: int | None = TOP_K
    image_weight: float = Field(0.0, ge=0, description="contrastive: β, weight of the visual guidance (MAGIC): how "
                                                        "well each candidate's text matches the prompt's image; "
                                                        "0 = off. Needs an image per prompt.")
    image_scorer: str = Field("efficientnet-minilm", description="contrastive with image_weight: the image-text "
                                                                 "scorer, efficientnet-minilm (packaged) or an HF "
                                                                 "CLIP/SigLIP directory.")
    image_gate: str | None = Field(None, description="contrastive with image_weight: a gate file (`lmforge gate`); a "
                                                       "prompt's image guides only when the gate rates it relevant to "
                                                       "the prompt.")

    @model_validator(mode="after")
    def _gate_needs_guidance(self) -> ContrastiveParams:
        if self.image_gate and not self.image_weight:
            raise ValueError("image_gate decides whether a prompt's image guides the text: set image_weight too")
        return self


class PromptLookupParams(StrategyParams):
    description = "prompt_lookup (greedy's output, several tokens a step, drafted from the prompt)"
    llama_cpp = True

    prompt_lookup_num_tokens: int = Field(7, ge=1, description="prompt_lookup: draft tokens checked per step (7: the "
                                                               "8-row check costs little more than one row on CPU).")
    max_matching_ngram_size: int = Field(2, ge=1, description="prompt_lookup: longest n-gram matched to find a draft.")


class SpeculativeParams(StrategyParams):
    description = "speculative (greedy's output, several tokens a step, drafted by decode.draft_model)"

    draft_model: str | None = Field(None, description="speculative: the small model that drafts (a packaged alias or "
                                                        "folder; same tokenizer as the model).")
    num_draft_tokens: int = Field(5, ge=1, description="speculative: tokens the draft model proposes per step.")

    @model_validator(mode="after")
    def _needs_a_draft_model(self) -> SpeculativeParams:
        if not self.draft_model:
            raise ValueError("strategy speculative needs draft_model: a small model with the same tokenizer")
        return self


class AutoParams(StrategyParams):
    description = "auto (a learned policy picks one per prompt)"

    policy: str | None = Field(None, description="auto: the folder of a trained decoding policy (policy.json).")

    @model_validator(mode="after")
    def _needs_a_policy(self) -> AutoParams:
        if not self.policy:
            raise ValueError("strategy auto needs policy: the folder of a trained decoding policy")
        return self


STRATEGY_PARAMS: dict[str, type[StrategyParams]] = {
    "greedy": GreedyParams,
    "sample": SampleParams,
    "beam": BeamParams,
    "contrastive": ContrastiveParams,
    "prompt_lookup": PromptLookupParams,
    "speculative": SpeculativeParams,
    "auto": AutoParams,
}
