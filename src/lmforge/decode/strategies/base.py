"""What a decoding strategy is: its own knobs (`Params`, in decode/strategy_params.py: torch-free), how it decodes
a batch, and what it loads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule
from lmforge.decode.strategies.sampling import OnTokens, StopCheck
from lmforge.decode.strategy_params import StrategyParams


@dataclass
class Limits:
    """When rows stop, and what else a call asks for besides the strategy's own knobs: the random generator,
    streaming, `explain` (alternatives recorded per token) and what the caller loaded for the strategy
    (`resources`: the draft model, guidance scorers)."""

    max_new_tokens: int
    stop_ids: list[int]
    stop_check: StopCheck | None = None
    generator: torch.Generator | None = None
    on_tokens: OnTokens | None = None
    explain: int = 0
    resources: dict[str, Any] | None = None

    def resource(self, name: str) -> Any:
        return (self.resources or {}).get(name)


Decode = Callable[[Engine, Any, Sequence[Rule], Limits], list[list[Candidate]]]


@dataclass(frozen=True)
class DecodingStrategy:
    """One entry of STRATEGIES. `decode(engine, params, rules, limits)` decodes one batch (per prompt, its
    candidates best first) — or, for a strategy that wraps the others, `wraps(generate, …)` decodes the whole
    call with them. `load(params, device)` gives the resources it reads from `Limits` (loaded once, by the
    caller); `rules(params)` adds its own rules after the shared ones. Where it can run: its Params' flags."""

    params: type[StrategyParams]
    decode: Decode | None = None
    wraps: Callable[..., list[list[Candidate]]] | None = None
    load: Callable[[Any, torch.device], dict[str, Any]] | None = None
    rules: Callable[[Any], list[Rule]] | None = None
