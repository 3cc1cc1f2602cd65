"""Contrastive search (Su et al. 2022, arXiv:2202.06417), with room for guidance scorers.

Each step looks at the k most likely next tokens, runs all k (one batched forward over k copies of
each row, reusing the row's cache) and picks the one maximising

    (1 − α) · p(v)  −  α · max_j cos(h_v, h_j)  +  Σ weight · scorer(v)

where h are the top layer's hidden states of the candidate and of every earlier token: a token
whose state repeats the context is penalised. A *scorer* rates each row's candidate tokens
(e.g. how well the text matches an image — MAGIC, arXiv:2205.02655); the chosen copy's cache is
kept, so the candidate's forward pass is also the next step's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.sampling import (
    OnTokens,
    StopCheck,
    chosen_logprobs,
    record_step,
    still_running,
)
from lmforge.decode.strategy_params import ContrastiveParams as Params

#: (tokens generated so far (rows, t), candidate tokens (rows, k), each row's prompt index (rows,))
#: -> a score per candidate (rows, k)
Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def contrastive_search(engine: Engine, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int], alpha: float = 0.6,
                       top_k: int = 4, scorers: Sequence[tuple[float, Scorer]] = (), stop_check: StopCheck | None = None,
                       on_tokens: OnTokens | None = None) -> list[Candidate]:
    """The contrastive continuation of every row of `engine`."""
    engine.keep_hidden = True
    n, k = engine.rows, top_k
    device = engine.device
    logits = engine.prefill()  # (n, vocab)
    context = engine.last_hidden  # (n, length, hidden)
    context = context / context.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    valid = engine.prompt_mask.bool() if not engine.encoder_decoder else torch.ones(context.shape[:2], dtype=torch.bool,
                                                                                    device=device)
    history = engine.first_tokens()
    start = history.shape[1]  # scorers see only the generated tokens
    alive = torch.arange(n)
    generated: list[list[int]] = [[] for _ in range(n)]
    logprob_sums = [0.0] * n
    for step in range(max_new_tokens):
        rows = history.shape[0]
        scores = apply_rules(rules, history, logits)
        probs = scores.softmax(dim=-1)
        top_probs, candidates = torch.topk(probs, k)  # (rows, k)
        engine.select(torch.arange(rows, device=device).repeat_interleave(k))
        next_logits = engine.step(candidates.reshape(-1, 1))[:, -1]  # (rows*k, vocab)
        states = engine.last_hidden[:, -1]  # (rows*k, hidden)
        states = (states / states.norm(dim=-1, keepdim=True).clamp_min(1e-12)).view(rows, k, -1)
        similarity = torch.einsum("rkd,rtd->rkt", states, context).masked_fill(~valid[:, None, :], -1.0)
        score = (1 - alpha) * top_probs - alpha * similarity.max(dim=-1).values
        for weight, scorer in scorers:
            if weight:
                score = score + weight * scorer(history[:, start:], candidates, alive)
        best = score.argmax(dim=-1)  # (rows,)
        tokens = candidates.gather(1, best[:, None]).squeeze(1)
        chosen_rows = torch.arange(rows, device=device) * k + best
        engine.select(chosen_rows)
        logprobs = chosen_logprobs(logits, tokens)
        logits = next_logits[chosen_rows]
        context = torch.cat([context, states[torch.arange(rows, device=device), best][:, None]], dim=1)
        valid = torch.cat([valid, valid.new_ones((rows, 1))], dim=1)
        history = torch.cat([history, tokens[:, None]], dim=1)
        done = record_step(alive.tolist(), tokens.tolist(), stop_ids, logprobs, generated, logprob_sums, stop_check,
                           on_tokens)
        if step + 1 == max_new_tokens or all(done):
            break
        if any(done):
            keep = still_running(done, device)
            engine.select(keep)
            alive, history, logits, context, valid = alive[keep], history[keep], logits[keep], context[keep], valid[keep]
    return [Candidate(tokens, total / max(len(tokens), 1)) for tokens, total in zip(generated, logprob_sums, strict=True)]


def decode(engine: Engine, params: Params, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    """`limits.resources["scorers"]`: the batch's weighted guidance (image-text scorers), if any."""
    return [[c] for c in contrastive_search(engine, rules, limits.max_new_tokens, limits.stop_ids, params.penalty_alpha,
                                            params.top_k or 4, limits.resource("scorers") or (), limits.stop_check,
                                            limits.on_tokens)]


STRATEGY = DecodingStrategy(Params, decode)
