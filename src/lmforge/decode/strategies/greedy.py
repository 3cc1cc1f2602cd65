"""Greedy decoding: each row's most likely token, every step."""

from __future__ import annotations

from collections.abc import Sequence

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.sampling import argmax_choice, token_by_token
from lmforge.decode.strategy_params import GreedyParams as Params


def decode(engine: Engine, params: Params, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    return [[c] for c in token_by_token(engine, argmax_choice, rules, limits.max_new_tokens, limits.stop_ids,
                                        limits.stop_check, limits.explain, limits.on_tokens)]


STRATEGY = DecodingStrategy(Params, decode)
