"""The `decode:` config section: which strategy, its knobs, and the rules applied to every step.

One flat model, so `decode.num_beams` is the YAML key, the override and the CLI flag alike; a knob
that belongs to another strategy than the chosen one is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmforge.config.validate import refuse_foreign_knobs

SAMPLING_FIELDS = frozenset({"temperature", "top_k", "top_p", "min_p", "typical_p"})
BEAM_FIELDS = frozenset({"num_beams", "length_penalty", "early_stopping", "num_beam_groups", "diversity_penalty"})
LOOKUP_FIELDS = frozenset({"prompt_lookup_num_tokens", "max_matching_ngram_size"})
STRATEGY_FIELDS: dict[str, frozenset[str]] = {  # the knobs each strategy reads, beyond the shared rules
    "greedy": frozenset(),
    "sample": SAMPLING_FIELDS | {"num_return_sequences"},
    "beam": BEAM_FIELDS | {"num_return_sequences"},
    "prompt_lookup": LOOKUP_FIELDS,
    "contrastive": frozenset({"penalty_alpha", "top_k", "image_weight", "image_scorer", "image_gate"}),
    "speculative": frozenset({"draft_model", "num_draft_tokens"}),
    "auto": frozenset({"policy"}),
}
DecodingWeights = Literal["fp32", "bf16", "int8"]  # decode.weights, and `lmforge serve --weights`
LLAMA_CPP_STRATEGIES = ("greedy", "sample", "beam", "prompt_lookup")  # need no hidden states, forks or second model
STRATEGY_KNOBS = frozenset().union(*STRATEGY_FIELDS.values()) | {"strategy"}  # every field a strategy owns


def shared_fields(fields: dict) -> dict:
    """`fields` of a decode section without the strategy and its knobs: the rules every strategy applies
    (stops, constraints, weights, seed …)."""
    return {name: value for name, value in fields.items() if name not in STRATEGY_KNOBS}


class DecodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["greedy", "sample", "beam", "contrastive", "prompt_lookup", "speculative", "auto"] = Field(
        "greedy", description="greedy | sample | beam | contrastive | prompt_lookup | speculative (these two give "
                              "greedy's output, several tokens a step: drafted from the prompt or by a draft model) | "
                              "auto (a learned policy picks one per prompt).")
    policy: str | None = Field(None, description="auto: the folder of a trained decoding policy (policy.json).")
    # sampling
    temperature: float = Field(1.0, gt=0, description="sample: divide scores by this (< 1 sharper, > 1 flatter).")
    top_k: int | None = Field(None, gt=0, description="sample: draw only from the k most likely tokens; contrastive: "
                                                       "candidates per step (default 4).")
    top_p: float | None = Field(None, gt=0, le=1, description="sample: nucleus, the fewest tokens whose probability reaches p.")
    min_p: float | None = Field(None, ge=0, le=1, description="sample: drop tokens below p × the best token's probability.")
    typical_p: float | None = Field(None, gt=0, le=1, description="sample: locally typical sampling mass.")
    # beam search
    num_beams: int = Field(4, ge=1, description="beam: hypotheses kept per prompt.")
    length_penalty: float = Field(1.0, description="beam: finished score = sum log p / length**length_penalty.")
    early_stopping: bool | Literal["never"] = Field(
        False, description="beam: true = stop once num_beams hypotheses finished; false = HF's heuristic; never = exact.")
    num_beam_groups: int = Field(1, ge=1, description="beam: >1 = diverse beam search, the beams split into this many "
                                                       "groups (num_beams must be a multiple).")
    diversity_penalty: float = Field(0.0, ge=0, description="beam with groups: subtracted from a token's log-prob per "
                                                             "earlier group that chose it at the same step.")
    num_return_sequences: int = Field(1, ge=1, description="beam/sample: outputs per prompt.")
    # contrastive search
    penalty_alpha: float = Field(0.6, ge=0, le=1, description="contrastive: weight of the degeneration penalty "
                                                               "(0 = greedy).")
    image_weight: float = Field(0.0, ge=0, description="contrastive: β, weight of the visual guidance (MAGIC): how "
                                                        "well each candidate's text matches the prompt's image; "
                                                        "0 = off. Needs an image per prompt.")
    image_scorer: str = Field("efficientnet-minilm", description="contrastive with image_weight: the image-text "
                                                                 "scorer, efficientnet-minilm (packaged) or an HF "
                                                                 "CLIP/SigLIP directory.")
    image_gate: str | None = Field(None, description="contrastive with image_weight: a gate file (`lmforge gate`); a "
                                                       "prompt's image guides only when the gate rates it relevant to "
                                                       "the prompt.")
    # prompt-lookup speculative decoding
    prompt_lookup_num_tokens: int = Field(7, ge=1, description="prompt_lookup: draft tokens checked per step (7: the "
                                                               "8-row check costs little more than one row on CPU).")
    max_matching_ngram_size: int = Field(2, ge=1, description="prompt_lookup: longest n-gram matched to find a draft.")
    draft_model: str | None = Field(None, description="speculative: the small model that drafts (a packaged alias or "
                                                        "folder; same tokenizer as the model).")
    num_draft_tokens: int = Field(5, ge=1, description="speculative: tokens the draft model proposes per step.")
    # rules for every strategy
    repetition_penalty: float | None = Field(None, gt=0, description="Penalise tokens already in the sequence (1.2 is typical).")
    no_repeat_ngram_size: int | None = Field(None, gt=0, description="Never repeat an n-gram of this size.")
    bad_words: list[str] = Field(default_factory=list, description="Words or phrases never to generate.")
    choices: list[str] = Field(default_factory=list, description="A closed set of outputs: every output is exactly one "
                                                                  "of these (e.g. label names).")
    logit_bias: dict[int, float] = Field(default_factory=dict, description="Token id → bias added to its score.")
    regex: str | None = Field(None, description="Every output matches this regular expression (outlines-core).")
    json_schema: str | None = Field(None, description="Every output is JSON valid under this schema: inline JSON or "
                                                       "the path of a .json file (outlines-core).")
    min_new_tokens: int = Field(0, ge=0, description="Forbid stopping before this many new tokens.")
    seed: int | None = Field(None, description="Seed for sampling, so runs repeat exactly.")
    weights: DecodingWeights = Field(
        "fp32", description="Weights read while decoding: as loaded (fp32), a bf16 copy (half the bytes per token) or "
                            "weight-only int8 linear layers (a quarter; ~2.5x fp32 speed on CPU); outputs may differ "
                            "slightly from fp32's.")
    cache: Literal["dynamic", "static"] = Field(
        "dynamic", description="KV cache: grown each step (dynamic) or allocated once for prompt + new tokens (static; "
                               "greedy and sample, decoder-only models).")
    compile: bool = Field(False, description="torch.compile the decoding step (needs cache: static). The first call "
                                             "compiles for a minute or two; pays off with weights: int8 on CPU.")
    explain: int = Field(0, ge=0, description="Record each token's log-probability and this many alternatives.")
    engine: Literal["torch", "llama.cpp"] = Field(
        "torch", description="What runs the forward passes: torch, or llama.cpp (llama-cpp-python) on a GGUF made from "
                             "the model on first use and cached (weights fp32 → f32, bf16 → bf16, int8 → q8_0); "
                             "strategies greedy, sample, beam and prompt_lookup, decoder-only models llama.cpp knows.")

    @model_validator(mode="after")
    def _knobs_match_strategy(self) -> DecodeParams:
        refuse_foreign_knobs(self, STRATEGY_KNOBS - STRATEGY_FIELDS[self.strategy] - {"strategy"},
                             f"strategy {self.strategy!r}", "remove {it} or choose a strategy that uses {it}")
        if sum(bool(x) for x in (self.choices, self.regex, self.json_schema)) > 1:
            raise ValueError("choose one of choices, regex and json_schema")
        if self.compile and self.cache != "static":
            raise ValueError("compile needs cache: static (a step of fixed shapes compiles once)")
        if self.cache == "static" and self.strategy not in ("greedy", "sample"):
            raise ValueError(f"cache: static works with strategies greedy and sample, not {self.strategy!r}")
        if self.image_gate and not self.image_weight:
            raise ValueError("image_gate decides whether a prompt's image guides the text: set image_weight too")
        if self.strategy == "auto" and not self.policy:
            raise ValueError("strategy auto needs policy: the folder of a trained decoding policy")
        if self.strategy == "speculative" and not self.draft_model:
            raise ValueError("strategy speculative needs draft_model: a small model with the same tokenizer")
        if self.strategy == "beam" and self.num_beams % self.num_beam_groups:
            raise ValueError(f"num_beams ({self.num_beams}) must be a multiple of num_beam_groups ({self.num_beam_groups})")
        if self.engine == "llama.cpp" and (self.strategy not in LLAMA_CPP_STRATEGIES or self.cache != "dynamic"):
            raise ValueError(f"engine llama.cpp runs strategies {', '.join(LLAMA_CPP_STRATEGIES)} with cache dynamic; "
                             f"use engine torch for {self.strategy!r}" + (" with cache static" if self.cache != "dynamic" else ""))
        if self.strategy == "beam" and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})")
        return self
