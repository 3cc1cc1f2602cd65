"""The `decode:` config section: which strategy, its knobs, and the rules applied to every step.

One flat model, so `decode.num_beams` is the YAML key, the override and the CLI flag alike; a knob
that belongs to another strategy than the chosen one is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from lmforge.config.strict import STRICT
from lmforge.config.validate import refuse_foreign_knobs
from lmforge.decode.strategy_params import STRATEGY_PARAMS

DecodingWeights = Literal["fp32", "bf16", "int8"]  # decode.weights, and `lmforge serve --weights`
DEFAULT_MAX_NEW_TOKENS = 128  # task.max_new_tokens, and a server's default max_tokens for a plain model
STRATEGY_FIELDS: dict[str, frozenset[str]] = {name: frozenset(params.model_fields)
                                              for name, params in STRATEGY_PARAMS.items()}  # each strategy's knobs
LLAMA_CPP_STRATEGIES = tuple(name for name, params in STRATEGY_PARAMS.items() if params.llama_cpp)
STATIC_CACHE_STRATEGIES = tuple(name for name, params in STRATEGY_PARAMS.items() if params.static_cache)
STRATEGY_KNOBS = frozenset().union(*STRATEGY_FIELDS.values()) | {"strategy"}  # every field a strategy owns


def shared_fields(fields: dict) -> dict:
    """`fields` of a decode section without the strategy and its knobs: the rules every strategy applies
    (stops, constraints, weights, seed …)."""
    return {name: value for name, value in fields.items() if name not in STRATEGY_KNOBS}


class RuleParams(BaseModel):
    """The rules every strategy applies, and how the forward passes run."""

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
    seed: int | None = Field(None, ge=0, lt=2**64, description="Seed for sampling, so runs repeat exactly (0 to 2^64 - 1).")
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
    engine: Literal["auto", "torch", "llama.cpp"] = Field(
        "auto", description="What runs the forward passes: llama.cpp (llama-cpp-python) on a GGUF made from the model "
                            "on first use and cached (weights fp32 → f32, bf16 → bf16, int8 → q8_0; strategies greedy, "
                            "sample, beam and prompt_lookup, decoder-only models llama.cpp knows), torch, or auto: "
                            "llama.cpp where the model (loaded to decode, on the CPU) and the strategy run there, "
                            "else torch.")
    prefix_cache: bool = Field(
        True, description="engine llama.cpp: a prompt starting with the tokens of the previous batch's first prompt (a "
                          "system prompt, a chat's earlier turns) reuses their KV cache instead of reading them again, "
                          "as llama.cpp's own server does; false reads every prompt whole.")


class _DecodeSection(BaseModel):
    """`decode:` — the strategy, its knobs (one field each, from STRATEGIES) and the rules (RuleParams)."""

    model_config = STRICT

    @model_validator(mode="after")
    def _knobs_match_strategy(self) -> Any:
        refuse_foreign_knobs(self, STRATEGY_KNOBS - STRATEGY_FIELDS[self.strategy] - {"strategy"},
                             f"strategy {self.strategy!r}", "remove {it} or choose a strategy that uses {it}")
        self.strategy_params()  # the strategy's own checks
        if sum(bool(x) for x in (self.choices, self.regex, self.json_schema)) > 1:
            raise ValueError("choose one of choices, regex and json_schema")
        if self.compile and self.cache != "static":
            raise ValueError("compile needs cache: static (a step of fixed shapes compiles once)")
        if self.cache == "static" and self.strategy not in STATIC_CACHE_STRATEGIES:
            raise ValueError(f"cache: static works with strategies {' and '.join(STATIC_CACHE_STRATEGIES)}, not "
                             f"{self.strategy!r}")
        if self.engine == "llama.cpp" and (self.strategy not in LLAMA_CPP_STRATEGIES or self.cache != "dynamic"):
            raise ValueError(f"engine llama.cpp runs strategies {', '.join(LLAMA_CPP_STRATEGIES)} with cache dynamic; "
                             f"use engine torch for {self.strategy!r}" + (" with cache static" if self.cache != "dynamic" else ""))
        return self

    def strategy_params(self) -> Any:
        """The chosen strategy's own `Params`, from this section's fields (its checks raise ValueError)."""
        own = STRATEGY_PARAMS[self.strategy]
        try:
            return own.model_validate({name: getattr(self, name) for name in own.model_fields})
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None

    def shared_fields(self) -> dict:
        """The rules of this section without the strategy and its knobs (what every strategy applies)."""
        return shared_fields(self.model_dump())


def _section_fields() -> dict[str, tuple[Any, FieldInfo]]:
    fields: dict[str, tuple[Any, FieldInfo]] = {"strategy": (Literal[tuple(STRATEGY_PARAMS)], Field(
        "greedy", description=" | ".join(params.description for params in STRATEGY_PARAMS.values()) + "."))}
    for name, params in STRATEGY_PARAMS.items():
        for knob, info in params.model_fields.items():
            assert knob not in fields or repr(fields[knob][1]) == repr(info), \
                f"{name}.{knob}: a knob two strategies share is defined once (strategy_params.py)"
            fields[knob] = (info.annotation, info)
    return fields | {name: (info.annotation, info) for name, info in RuleParams.model_fields.items()}


DecodeParams = create_model("DecodeParams", __base__=_DecodeSection, **_section_fields())
