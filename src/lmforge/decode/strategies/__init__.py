"""Decoding strategies by name: the only list of them. Each takes an engine over a batch of prompts
and returns, per prompt, its candidates best first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.params import DecodeParams
from lmforge.decode.rules import Rule
from lmforge.decode.strategies.beam import beam_search
from lmforge.decode.strategies.contrastive import Scorer, contrastive_search
from lmforge.decode.strategies.prompt_lookup import lookup_proposer
from lmforge.decode.strategies.sampling import (
    OnTokens,
    StopCheck,
    argmax_choice,
    sampled_choice,
    token_by_token,
)
from lmforge.decode.strategies.speculative import DraftModel, speculative_decode


@dataclass
class Limits:
    """When rows stop, and what else a call asks for besides the strategy's own knobs."""

    max_new_tokens: int
    stop_ids: list[int]
    stop_check: StopCheck | None = None
    generator: torch.Generator | None = None
    on_tokens: OnTokens | None = None
    draft_model: PreTrainedModel | None = None  # strategy speculative: the small model that drafts
    scorers: Sequence[tuple[float, Scorer]] = ()  # strategy contrastive: weighted guidance for this batch


Strategy = Callable[[Engine, DecodeParams, Sequence[Rule], Limits], list[list[Candidate]]]


def _greedy(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    return [[c] for c in token_by_token(engine, argmax_choice, rules, limits.max_new_tokens, limits.stop_ids,
                                        limits.stop_check, params.explain, limits.on_tokens)]


def _sample(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    copies = params.num_return_sequences
    if copies > 1:
        engine.select(torch.arange(engine.rows, device=engine.device).repeat_interleave(copies))
    flat = token_by_token(engine, sampled_choice(limits.generator), rules, limits.max_new_tokens, limits.stop_ids,
                          limits.stop_check, params.explain, limits.on_tokens)
    return [sorted(flat[i:i + copies], key=lambda c: -c.score) for i in range(0, len(flat), copies)]


def _beam(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    return beam_search(engine, rules, limits.max_new_tokens, limits.stop_ids, params.num_beams, params.length_penalty,
                       params.early_stopping, params.num_return_sequences, limits.stop_check, params.num_beam_groups,
                       params.diversity_penalty, explain=params.explain > 0)


def _prompt_lookup(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    proposer = lookup_proposer(params.max_matching_ngram_size)
    return [[c] for c in speculative_decode(engine, lambda prompt: proposer, rules, limits.max_new_tokens, limits.stop_ids,
                                            params.prompt_lookup_num_tokens, limits.stop_check, limits.on_tokens)]


def _speculative(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    if limits.draft_model is None:
        raise ValueError("strategy speculative needs the draft model loaded (decode.draft_model)")
    draft = limits.draft_model
    return [[c] for c in speculative_decode(engine, lambda prompt: DraftModel(draft, prompt, engine.pad_id), rules,
                                            limits.max_new_tokens, limits.stop_ids, params.num_draft_tokens,
                                            limits.stop_check, limits.on_tokens)]


def _contrastive(engine: Engine, params: DecodeParams, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    return [[c] for c in contrastive_search(engine, rules, limits.max_new_tokens, limits.stop_ids, params.penalty_alpha,
                                            params.top_k or 4, limits.scorers, limits.stop_check, limits.on_tokens)]


STRATEGIES: dict[str, Strategy] = {"greedy": _greedy, "sample": _sample, "beam": _beam, "contrastive": _contrastive,
                                   "prompt_lookup": _prompt_lookup, "speculative": _speculative}
