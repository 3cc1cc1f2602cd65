"""Decoding strategies by name, under the names of `decode.strategy_params.STRATEGY_PARAMS` (the one list). Each is
one module exporting its `Params` (its knobs, fields of the `decode:` section) and its `STRATEGY` (how it decodes a
batch on an engine, or wraps the others)."""

from __future__ import annotations

from lmforge.decode.strategies import auto, beam, contrastive, greedy, prompt_lookup, sample, speculative
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategy_params import STRATEGY_PARAMS

STRATEGIES: dict[str, DecodingStrategy] = {
    "greedy": greedy.STRATEGY,
    "sample": sample.STRATEGY,
    "beam": beam.STRATEGY,
    "contrastive": contrastive.STRATEGY,
    "prompt_lookup": prompt_lookup.STRATEGY,
    "speculative": speculative.STRATEGY,
    "auto": auto.STRATEGY,
}

assert {name: s.params for name, s in STRATEGIES.items()} == STRATEGY_PARAMS, "a strategy's module and its Params differ"

__all__ = ["STRATEGIES", "DecodingStrategy", "Limits"]
