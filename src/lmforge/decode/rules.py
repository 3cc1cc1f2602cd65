"""Decoding rules: tiny callables `(tokens, scores) -> scores` that reshape next-token scores.

`tokens` is (rows, length): each row's whole sequence so far (padded prompt + generated tokens, as
HF passes them); `scores` is (rows, vocab). Each rule checks its arguments when built and does one
thing; `apply_rules` runs them in order. The filters match HF's warpers on the same scores (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NEG_INF = float("-inf")


def apply_rules(rules: Sequence[Rule], tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for rule in rules:
        scores = rule(tokens, scores)
    return scores


def temperature(value: float) -> Rule:
    """Divide scores by `value` (< 1 sharpens, > 1 flattens)."""
    if value <= 0:
        raise ValueError(f"temperature must be > 0, got {value}")
    return lambda tokens, scores: scores / value


def top_k(k: int, keep: int = 1) -> Rule:
    """Keep the k best tokens (at least `keep`)."""
    if k <= 0:
        raise ValueError(f"top_k must be > 0, got {k}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        kth = torch.topk(scores, min(max(k, keep), scores.shape[-1]))[0][..., -1:]
        return scores.masked_fill(scores < kth, NEG_INF)
    return rule


def top_p(p: float, keep: int = 1) -> Rule:
    """Nucleus: keep the smallest set of best tokens whose probability reaches p."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - p)
        drop[..., -keep:] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)
    return rule


def min_p(p: float, keep: int = 1) -> Rule:
    """Keep tokens whose probability is at least p × the best token's."""
    if not 0 <= p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {p}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        drop = probs < p * probs.amax(dim=-1, keepdim=True)
        best = torch.topk(probs, keep, dim=-1).indices
        drop.scatter_(1, best, False)
        return scores.masked_fill(drop, NEG_INF)
    return rule


def typical_p(p: float, keep: int = 1) -> Rule:
    """Locally typical sampling (Meister et al. 2022, arXiv:2202.00666): keep tokens whose surprise is
    closest to the entropy until their mass reaches p."""
    if not 0 < p <= 1:
        raise ValueError(f"typical_p must be in (0, 1], got {p}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = scores.log_softmax(dim=-1)
        entropy = -(logp.exp() * logp).nansum(-1, keepdim=True)
        shifted = (-logp - entropy).abs()
        ordered_shift, order = torch.sort(shifted, descending=False)
        cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < p).sum(dim=1).clamp(max=scores.shape[-1] - 1)
        drop = ordered_shift > ordered_shift.gather(1, last.view(-1, 1))
        drop[..., :keep] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)
    return rule


def repetition_penalty(penalty: float) -> Rule:
    """CTRL's penalty (arXiv:1909.05858): divide positive / multiply negative scores of tokens already in the row."""
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen = scores.gather(1, tokens)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return scores.scatter(1, tokens, seen)
    return rule


def no_repeat_ngram(n: int) -> Rule:
    """Forbid any token that would repeat an n-gram already in the row."""
    if n <= 0:
        raise ValueError(f"no_repeat_ngram_size must be > 0, got {n}")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] + 1 < n:
            return scores
        scores = scores.clone()
        for row, sequence in enumerate(tokens.tolist()):
            prefix = tuple(sequence[len(sequence) - n + 1:]) if n > 1 else ()
            banned = {sequence[i + n - 1] for i in range(len(sequence) - n + 1) if tuple(sequence[i:i + n - 1]) == prefix}
            if banned:
                scores[row, list(banned)] = NEG_INF
        return scores
    return rule


def bad_words(sequences: list[list[int]]) -> Rule:
    """Forbid each token sequence: its last token is banned wherever the row ends with the rest of it."""
    if any(not s for s in sequences):
        raise ValueError("bad_words needs non-empty token sequences")

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        rows = tokens.tolist()
        for words in sequences:
            head, last = words[:-1], words[-1]
            for row, sequence in enumerate(rows):
                if not head or sequence[len(sequence) - len(head):] == head:
                    scores[row, last] = NEG_INF
        return scores
    return rule


def logit_bias(bias: dict[int, float]) -> Rule:
    """Add a fixed bias to chosen tokens (OpenAI's `logit_bias`); -inf bans a token."""
    ids, values = torch.tensor(list(bias), dtype=torch.long), torch.tensor(list(bias.values()))

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # one op a step (served at every token)
        added = values.to(scores.device, scores.dtype).expand(scores.shape[0], -1)
        return scores.index_add(1, ids.to(scores.device), added)
    return rule


def min_new_tokens(count: int, prompt_length: int, stop_ids: list[int]) -> Rule:
    """Forbid the stop tokens until `count` tokens have been generated."""
    banned = torch.tensor(stop_ids, dtype=torch.long)

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] - prompt_length >= count:
            return scores
        return scores.index_fill(1, banned.to(scores.device), NEG_INF)  # a copy, filled (list indexing: 100 µs)
    return rule


def closed_choices(choices: list[list[int]], prompt_length: int, stop_ids: list[int]) -> Rule:
    """Only tokens that continue one of `choices` (token sequences); a stop token once a choice is complete.

    Every output is then exactly one of the choices (a closed label set)."""
    if not choices or any(not c for c in choices):
        raise ValueError("choices needs at least one non-empty token sequence")
    trie: dict = {}
    for choice in choices:
        node = trie
        for token in choice:
            node = node.setdefault(token, {})
        node[None] = {}  # a choice ends here

    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        for row, sequence in enumerate(tokens[:, prompt_length:].tolist()):
            node = trie
            for token in sequence:
                node = node.get(token, {})
            nexts = [t for t in node if t is not None]
            allowed[row, nexts] = True
            if None in node or not node:  # complete (or off the trie, which cannot happen): may only stop
                allowed[row, stop_ids] = True
        return scores.masked_fill(~allowed, NEG_INF)
    return rule


def matches_automaton(allowed: Callable[[tuple[int, ...]], tuple[list[int], bool]], prompt_length: int,
                      stop_ids: list[int]) -> Rule:
    """Only tokens the automaton allows after the row's generated tokens; stop tokens where it may end."""
    def rule(tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for row, sequence in enumerate(tokens[:, prompt_length:].tolist()):
            nexts, may_end = allowed(tuple(sequence))
            mask[row, nexts] = True
            if may_end:
                mask[row, stop_ids] = True
        return scores.masked_fill(~mask, NEG_INF)
    return rule
