"""Greedy decoding and sampling: one token per row per step, finished rows leave the batch.

The same loop serves both; only the choice differs (`argmax` or a draw from the ruled scores).
Rows that stop (EOS or a stop string) are dropped from the engine so later steps read the weights
for the rows still running only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules

Choose = Callable[[torch.Tensor], torch.Tensor]  # (rows, vocab) ruled scores -> (rows,) token ids
StopCheck = Callable[[list[int]], bool]  # a row's generated tokens -> stop here (stop strings)
OnTokens = Callable[[list[int], list[int]], None]  # (original rows, their new tokens) after each step: streaming


def argmax_choice(scores: torch.Tensor) -> torch.Tensor:
    return scores.argmax(dim=-1)


def sampled_choice(generator: torch.Generator | None) -> Choose:
    def choose(scores: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)
    return choose


@torch.no_grad()
def token_by_token(engine: Engine, choose: Choose, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int],
                   stop_check: StopCheck | None = None, explain: int = 0,
                   on_tokens: OnTokens | None = None) -> list[Candidate]:
    """Decode every row of `engine` until a stop token, `stop_check` or `max_new_tokens`.

    `explain` > 0 records, for each generated token, its log-probability and the `explain` most
    likely alternatives; `on_tokens` hears each step's tokens (stop tokens left out) as they come."""
    alive = torch.arange(engine.rows)  # the original row of each engine row
    history = engine.first_tokens()  # (rows, length): what rules see, as in HF
    generated: list[list[int]] = [[] for _ in range(engine.rows)]
    logprob_sums = [0.0] * engine.rows
    steps: list[list[dict]] = [[] for _ in range(engine.rows)]
    stops = torch.tensor(stop_ids, dtype=torch.long, device=history.device)
    logits = engine.prefill()  # (rows, vocab)
    for step in range(max_new_tokens):
        tokens = choose(apply_rules(rules, history, logits))  # (rows,)
        logprobs = logits.log_softmax(dim=-1)
        chosen = logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
        done = record_step(alive.tolist(), tokens, stops, chosen, generated, logprob_sums, stop_check, on_tokens)
        if explain:
            for row, (index, token) in enumerate(zip(alive.tolist(), tokens.tolist(), strict=True)):
                if token not in stop_ids:  # as the text, the explanation leaves the stop token out
                    steps[index].append(explain_step(token, chosen[row], logprobs[row], explain))
        if step + 1 == max_new_tokens or bool(done.all()):
            break
        history = torch.cat([history, tokens[:, None]], dim=1)
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            engine.select(keep)
            alive, history, tokens = alive[keep], history[keep], tokens[keep]
        logits = engine.step(tokens[:, None])[:, -1]
    return [Candidate(tokens, total / max(len(tokens), 1), row_steps)
            for tokens, total, row_steps in zip(generated, logprob_sums, steps, strict=True)]


def record_step(alive: list[int], tokens: torch.Tensor, stops: torch.Tensor, logprobs: list[float],
                generated: list[list[int]], logprob_sums: list[float], stop_check: StopCheck | None,
                on_tokens: OnTokens | None) -> torch.Tensor:
    """Append each row's new token (unless it is a stop token) and tell `on_tokens`; which rows are done, (rows,)."""
    done = torch.isin(tokens, stops)
    kept_rows, kept_tokens = [], []
    for row, (index, token) in enumerate(zip(alive, tokens.tolist(), strict=True)):
        if done[row]:
            continue
        generated[index].append(token)
        logprob_sums[index] += logprobs[row]
        kept_rows.append(index)
        kept_tokens.append(token)
        if stop_check is not None and stop_check(generated[index]):
            done[row] = True
    if on_tokens is not None and kept_rows:
        on_tokens(kept_rows, kept_tokens)
    return done


def explain_step(token: int, logprob: float, logprobs: torch.Tensor, alternatives: int) -> dict:
    """One generated token with its log-probability and the most likely alternatives."""
    best = torch.topk(logprobs, alternatives)
    return {"token": token, "logprob": logprob,
            "top": [(int(i), float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)]}
