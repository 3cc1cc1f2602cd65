"""Decoding strategies by name: the only list of them. Each is one module exporting its `Params` (its knobs,
fields of the `decode:` section) and its `STRATEGY` (how it decodes a batch on an engine, or wraps the others)."""

from __future__ import annotations

from lmforge.decode.strategies import auto, beam, contrastive, greedy, prompt_lookup, sample, speculative
from lmforge.decode.strategies.base import DecodingStrategy, Limits

STRATEGIES: dict[str, DecodingStrategy] = {
    "greedy": greedy.STRATEGY,
    "sample": sample.STRATEGY,
    "beam": beam.STRATEGY,
    "contrastive": contrastive.STRATEGY,
    "prompt_lookup": prompt_lookup.STRATEGY,
    "speculative": speculative.STRATEGY,
    "auto": auto.STRATEGY,
}

__all__ = ["STRATEGIES", "DecodingStrategy", "Limits"]
