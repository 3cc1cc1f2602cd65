"""Prompt-lookup speculative decoding: greedy output, several tokens per step when the output copies
its input (Saxena 2023, github.com/apoorvumang/prompt-lookup-decoding).

The draft is what followed the latest earlier occurrence of the sequence's last n-gram; one
forward pass scores the draft, and the longest prefix that greedy decoding would have chosen is
kept together with the model's own next token. Each accepted token is the argmax given exactly
the tokens before it, so the output is greedy's (up to float rounding between a one-token and a
several-token forward pass). Rows run one at a time: their accepted lengths differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.strategies.sampling import OnTokens, StopCheck
from lmforge.errors import ConfigError


def find_draft(sequence: list[int], max_ngram: int, count: int) -> list[int]:
    """Up to `count` tokens that followed the latest earlier occurrence of the last n-gram (longest n first).

    >>> find_draft([5, 6, 7, 8, 5, 6], max_ngram=2, count=2)
    [7, 8]
    """
    for n in range(min(max_ngram, len(sequence) - 1), 0, -1):
        tail = sequence[-n:]
        for start in range(len(sequence) - n - 1, -1, -1):
            if sequence[start:start + n] == tail:
                return sequence[start + n:start + n + count]
    return []


@torch.no_grad()
def prompt_lookup(engine: Engine, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int], draft_tokens: int = 10,
                  max_ngram: int = 2, stop_check: StopCheck | None = None,
                  on_tokens: OnTokens | None = None) -> list[Candidate]:
    """Greedy continuations of every row of `engine`, verified a draft at a time."""
    if engine.encoder_decoder:
        raise ConfigError("decode.strategy prompt_lookup needs a decoder-only model (it drafts from the prompt the "
                          "decoder reads); use greedy for encoder-decoder models")
    prompts = engine.prompts()
    if engine.rows > 1:
        return [prompt_lookup(Engine(engine.model, [prompt], engine.pad_id), rules, max_new_tokens,
                              stop_ids, draft_tokens, max_ngram, stop_check,
                              None if on_tokens is None else lambda rows, tokens, i=i: on_tokens([i], tokens))[0]
                for i, prompt in enumerate(prompts)]
    stops = set(stop_ids)
    sequence = list(prompts[0])
    generated: list[int] = []
    logprob_sum = 0.0
    logits = engine.prefill()[:, None]  # (1, 1, vocab): the scores for the next token
    pending: list[int] = []  # tokens chosen but not yet run through the model
    while True:
        draft = find_draft(sequence, max_ngram, min(draft_tokens, max_new_tokens - len(generated) - 1)) if pending else []
        if pending:
            logits = engine.step(torch.tensor([pending + draft], device=engine.device), keep=len(draft) + 1)
        accepted, stopped = [], False
        for j in range(len(draft) + 1):
            history = torch.tensor([sequence + accepted], device=engine.device)
            scores = apply_rules(rules, history, logits[:, j])
            token = int(scores.argmax(-1))
            if token in stops:
                stopped = True
                break
            logprob_sum += float(logits[0, j].log_softmax(-1)[token])
            accepted.append(token)
            generated.append(token)
            if len(generated) == max_new_tokens or (stop_check is not None and stop_check(generated)):
                stopped = True
                break
            if j == len(draft) or token != draft[j]:
                break
        if on_tokens is not None and accepted:
            on_tokens([0], accepted)
        if stopped:
            return [Candidate(generated, logprob_sum / max(len(generated), 1))]
        kept = len(accepted) - 1  # draft tokens that matched; the last accepted token is new to the model
        if pending:
            engine.crop(engine.length - len(draft) + kept)
        sequence += accepted
        pending = [accepted[-1]]
