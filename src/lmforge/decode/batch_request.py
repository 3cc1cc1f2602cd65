"""A request to a continuous batch (`continuous.py` on torch, `light_batch.py` on llama.cpp alone), torch-free."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from lmforge.decode.params import DecodeParams
from lmforge.decode.row_outputs import OnTokens


class Abandoned(Exception):
    """A request left the batch before it finished (its client went away or its time ran out)."""


@dataclass
class Request:
    """One request's prompts and how to decode them. Its `future` gets its candidates (one list per prompt,
    best first) or its exception; `on_tokens(prompt rows, tokens)` hears tokens as they come. Set
    `abandoned` to drop its rows at the next step."""

    prompts: list[list[int]]
    params: DecodeParams
    max_new_tokens: int
    stop_strings: list[str]
    on_tokens: OnTokens | None = None
    future: Future = field(default_factory=Future)
    abandoned: bool = False
    adapter: str | None = None  # the adapter its rows decode with, on a model serving several (None: the base)
