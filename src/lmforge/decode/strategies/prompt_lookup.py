"""Prompt-lookup drafts for speculative decoding: greedy output, several tokens per step when the
output copies its input (Saxena 2023, github.com/apoorvumang/prompt-lookup-decoding).

The draft is what followed the first earlier occurrence of the sequence's last n-gram (as HF does):
in a copying task that is the source text.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.speculative import Proposer, speculative_decode
from lmforge.decode.strategy_params import PromptLookupParams as Params


def find_draft(sequence: list[int], max_ngram: int, count: int) -> list[int]:
    """Up to `count` tokens that followed the first earlier occurrence of the last n-gram (longest n first).

    >>> find_draft([5, 6, 7, 8, 5, 6], max_ngram=2, count=2)
    [7, 8]
    """
    for n in range(min(max_ngram, len(sequence) - 1), 0, -1):
        tail = sequence[-n:]
        for start in range(len(sequence) - n):
            if sequence[start:start + n] == tail:
                return sequence[start + n:start + n + count]
    return []


def lookup_proposer(max_ngram: int) -> Proposer:
    """Drafts copied from earlier in the row's own tokens."""
    return lambda sequence, count: find_draft(sequence, max_ngram, count)


def decode(engine: Engine, params: Params, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    proposer = lookup_proposer(params.max_matching_ngram_size)
    return [[c] for c in speculative_decode(engine, lambda prompt: proposer, rules, limits.max_new_tokens, limits.stop_ids,
                                            params.prompt_lookup_num_tokens, limits.stop_check, limits.on_tokens)]


STRATEGY = DecodingStrategy(Params, decode)
