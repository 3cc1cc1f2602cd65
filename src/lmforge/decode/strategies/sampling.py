"""Greedy decoding and sampling: one token per row per step, finished rows leave the batch.

The same loop serves both; only the choice differs (`argmax` or a draw from the ruled scores).
Rows that stop (EOS or a stop string) are dropped from the engine so later steps read the weights
for the rows still running only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.row_outputs import OnTokens, RowOutputs, record_step
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.text import StopCheck

Choose = Callable[[torch.Tensor], torch.Tensor]  # (rows, vocab) ruled scores -> (rows,) token ids


def argmax_choice(scores: torch.Tensor) -> torch.Tensor:
    """Each row's best token (the first on ties, as torch's); fp32 on CPU through numpy's vectorised argmax
    (4 µs for SmolLM2's 49,152 scores against torch's 60 µs: it counts at llama.cpp's 9 ms a token)."""
    if scores.device.type == "cpu" and scores.dtype == torch.float32:
        return torch.from_numpy(np.argmax(scores.contiguous().numpy(), axis=-1))
    return scores.argmax(dim=-1)


def sampled_choice(generator: torch.Generator | None) -> Choose:
    def choose(scores: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)
    return choose


def chosen_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> list[float]:
    """Each row's log-probability of its token, from the unruled logits (one fused op: on CPU, after a
    llama.cpp step has flushed the caches, every op counts)."""
    return [-loss for loss in F.cross_entropy(logits, tokens, reduction="none").tolist()]


def choose_next(logits: torch.Tensor, history: torch.Tensor, alive: list[int], rules: Sequence[Rule], choose: Choose,
                stop_ids: list[int], outputs: RowOutputs, stop_check: StopCheck | None = None,
                on_tokens: OnTokens | None = None, explain: int = 0) -> tuple[torch.Tensor, list[bool]]:
    """Choose the next token of each live row (`alive` names their rows in `outputs`) from its ruled logits
    and record it; (tokens (live rows,), whether each row is done)."""
    tokens = choose(apply_rules(rules, history, logits))
    chosen = chosen_logprobs(logits, tokens)
    token_list = tokens.tolist()
    done = record_step(alive, token_list, stop_ids, chosen, outputs.generated, outputs.logprob_sums, stop_check,
                       on_tokens)
    if explain:
        logprobs = logits.log_softmax(dim=-1)
        for row, (index, token) in enumerate(zip(alive, token_list, strict=True)):
            if token not in stop_ids:  # as the text, the explanation leaves the stop token out
                outputs.steps[index].append(explain_step(token, chosen[row], logprobs[row], explain))
    return tokens, done


def still_running(done: list[bool], device: torch.device) -> torch.Tensor:
    """The rows that are not done, as indices for `Engine.select`."""
    return torch.tensor([row for row, finished in enumerate(done) if not finished], dtype=torch.long, device=device)


@torch.no_grad()
def token_by_token(engine: Engine, choose: Choose, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int],
                   stop_check: StopCheck | None = None, explain: int = 0,
                   on_tokens: OnTokens | None = None) -> list[Candidate]:
    """Decode every row of `engine` until a stop token, `stop_check` or `max_new_tokens`.

    `explain` > 0 records, for each generated token, its log-probability and the `explain` most
    likely alternatives; `on_tokens` hears each step's tokens (stop tokens left out) as they come."""
    alive = list(range(engine.rows))  # the original row of each engine row
    history = engine.first_tokens()  # (rows, length): what rules see, as in HF
    outputs = RowOutputs.empty(engine.rows)
    logits = engine.prefill()  # (rows, vocab)
    for step in range(max_new_tokens):
        tokens, done = choose_next(logits, history, alive, rules, choose, stop_ids, outputs, stop_check, on_tokens,
                                   explain)
        if step + 1 == max_new_tokens or all(done):
            break
        history = torch.cat([history, tokens[:, None]], dim=1)
        if any(done):
            keep = still_running(done, tokens.device)
            engine.select(keep)
            alive = [alive[row] for row in keep.tolist()]
            history, tokens = history[keep], tokens[keep]
        logits = engine.step(tokens[:, None])[:, -1]
    return outputs.candidates()


def explain_step(token: int, logprob: float, logprobs: torch.Tensor, alternatives: int) -> dict:
    """One generated token with its log-probability and the most likely alternatives."""
    best = torch.topk(logprobs, alternatives)
    return {"token": token, "logprob": logprob,
            "top": [(int(i), float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)]}
