"""Sampling: each row's next token drawn from its ruled distribution (temperature, top-k/p, min-p, typical)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmforge.decode import rules as R
from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.sampling import sampled_choice, token_by_token
from lmforge.decode.strategy_params import SampleParams as Params


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


STRATEGY = DecodingStrategy(Params, decode, rules=sampling_rules)
