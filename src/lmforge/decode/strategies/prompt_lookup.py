"""Prompt-lookup drafts for speculative decoding: greedy output, several tokens per step when the
output copies its input (Saxena 2023, github.com/apoorvumang/prompt-lookup-decoding).

The draft is what followed the first earlier occurrence of the sequence's last n-gram (as HF does):
in a copying task that is the source text.
"""

from __future__ import annotations

from lmforge.decode.strategies.speculative import Proposer


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
