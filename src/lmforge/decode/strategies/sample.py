"""Sampling: each row's next token drawn from its ruled distribution (temperature, top-k/p, min-p, typical)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from lmforge.decode import rules as R
from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.strategies.base import DecodingStrategy, Limits, StrategyParams
from lmforge.decode.strategies.knobs import NUM_RETURN_SEQUENCES, TOP_K
from lmforge.decode.strategies.sampling import sampled_choice, token_by_token


class Params(StrategyParams):
    temperature: float = Field(1.0, gt=0, description="sample: divide scores by this (< 1 sharper, > 1 flatter).")
    top_k: int | None = TOP_K
    top_p: float | None = Field(None, gt=0, le=1, description="sample: nucleus, the fewest tokens whose probability "
                                                               "reaches p.")
    min_p: float | None = Field(None, ge=0, le=1, description="sample: drop tokens below p × the best token's "
                                                              "probability.")
    typical_p: float | None = Field(None, gt=0, le=1, description="sample: locally typical sampling mass.")
    num_return_sequences: int = NUM_RETURN_SEQUENCES


def sampling_rules(params: Params) -> list[R.Rule]:
    """The filters that shape the distribution, in HF's order (after the shared rules)."""
    rules = [R.temperature(params.temperature)] if params.temperature != 1.0 else []
    for value, rule in ((params.top_k, R.top_k), (params.top_p, R.top_p), (params.min_p, R.min_p),
                        (params.typical_p, R.typical_p)):
        if value is not None:
            rules.append(rule(value))
    return rules


def decode(engine: Engine, params: Params, rules: Sequence[R.Rule], limits: Limits) -> list[list[Candidate]]:
    copies = params.num_return_sequences
    if copies > 1:
        engine.select(torch.arange(engine.rows, device=engine.device).repeat_interleave(copies))
    flat = token_by_token(engine, sampled_choice(limits.generator), rules, limits.max_new_tokens, limits.stop_ids,
                          limits.stop_check, limits.explain, limits.on_tokens)
    return [sorted(flat[i:i + copies], key=lambda c: -c.score) for i in range(0, len(flat), copies)]


STRATEGY = DecodingStrategy(Params, "sample", decode, rules=sampling_rules, llama_cpp=True, static_cache=True,
                            continuous=True)
