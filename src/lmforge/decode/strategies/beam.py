"""Beam search, step for step the algorithm of HF `generate` (transformers 5), so outputs match.

Each step keeps the 2·beams best continuations over all beams of a prompt; those ending in a stop
token become finished hypotheses scored sum(log p) / length**length_penalty, the best `beams`
unfinished ones run on. A prompt is done when no running beam can beat its worst finished one
(`early_stopping=False`, HF's heuristic), when it holds `beams` finished ones (`True`), or at
`max_new_tokens`. Done prompts leave the batch; the prompt is run once and then copied per beam.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.strategies.sampling import StopCheck

UNSET = -1.0e9  # HF's score for "no hypothesis here"


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (prompts, n, ...) gathered along dim 1 by index (prompts, m)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return tensor.gather(1, index.expand(*index.shape[:2], *tensor.shape[2:]))


@torch.no_grad()
def beam_search(engine: Engine, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int], num_beams: int = 4,
                length_penalty: float = 1.0, early_stopping: bool | Literal["never"] = False, num_return_sequences: int = 1,
                stop_check: StopCheck | None = None) -> list[list[Candidate]]:
    """The `num_return_sequences` best finished hypotheses of each prompt, best first."""
    if num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences ({num_return_sequences}) cannot exceed num_beams ({num_beams})")
    prompts, beams = engine.rows, num_beams
    device = engine.device
    keep = max(2, 1 + len(stop_ids)) * beams  # candidates per prompt per step
    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)
    logits = engine.prefill().repeat_interleave(beams, dim=0)  # (prompts*beams, vocab)
    engine.select(torch.arange(prompts, device=device).repeat_interleave(beams))
    history = engine.first_tokens()  # (prompts*beams, prompt length)
    alive = torch.arange(prompts, device=device)  # original prompt of each live prompt
    running = torch.zeros((prompts, beams, 0), dtype=torch.long, device=device)  # generated tokens
    running_scores = torch.zeros((prompts, beams), device=device)
    running_scores[:, 1:] = UNSET  # all beams start equal: only the first may expand
    finished = torch.zeros((prompts, beams, 0), dtype=torch.long, device=device)
    finished_scores = torch.full((prompts, beams), UNSET, device=device)
    is_finished = torch.zeros((prompts, beams), dtype=torch.bool, device=device)
    finished_lengths = torch.zeros((prompts, beams), dtype=torch.long, device=device)
    results: dict[int, list[Candidate]] = {}
    for length in range(1, max_new_tokens + 1):
        n = alive.numel()
        logprobs = apply_rules(rules, history, logits.log_softmax(dim=-1))  # (n*beams, vocab)
        vocab = logprobs.shape[-1]
        totals = (logprobs.view(n, beams, vocab) + running_scores[:, :, None]).view(n, beams * vocab)
        top_scores, top_index = torch.topk(totals, keep)  # (n, keep)
        source_beam, token = top_index // vocab, top_index % vocab
        candidates = torch.cat([_gather(running, source_beam), token[:, :, None]], dim=2)  # (n, keep, length)
        hits = torch.isin(token, stops) | (length == max_new_tokens)
        if stop_check is not None:
            hits |= torch.tensor([[stop_check(c) for c in row] for row in candidates.tolist()], device=device)
        # the best unfinished candidates run on
        open_scores = top_scores + hits.float() * UNSET
        chosen = torch.topk(open_scores, beams).indices  # (n, beams)
        running, running_scores = _gather(candidates, chosen), _gather(open_scores, chosen)
        parent = _gather(source_beam, chosen)
        # finished candidates among the top `beams` join the kept hypotheses if good enough
        just_finished = hits & (torch.arange(keep, device=device) < beams)
        scores = top_scores / (length ** length_penalty)
        full = is_finished.all(dim=1, keepdim=True) & (early_stopping is True)
        scores = scores + full.float() * UNSET + (~just_finished).float() * UNSET
        padded = torch.nn.functional.pad(finished, (0, 1), value=0)
        merged_scores = torch.cat([finished_scores, scores], dim=1)
        best = torch.topk(merged_scores, beams).indices
        finished = _gather(torch.cat([padded, candidates], dim=1), best)
        finished_scores = _gather(merged_scores, best)
        is_finished = _gather(torch.cat([is_finished, just_finished], dim=1), best)
        finished_lengths = _gather(torch.cat([finished_lengths, torch.full_like(token, length)], dim=1), best)
        # is a prompt done?
        best_length = max_new_tokens if early_stopping == "never" and length_penalty > 0 else length
        best_possible = running_scores[:, :1] / (best_length ** length_penalty)
        worst_kept = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, UNSET)
        improvable = (best_possible > worst_kept).any(dim=1)
        done = ~improvable | (is_finished.all(dim=1) & (early_stopping is True)) | hits.all(dim=1) | (length == max_new_tokens)
        for i in done.nonzero().squeeze(1).tolist():
            results[int(alive[i])] = [Candidate(_until_stop(finished[i, b, :finished_lengths[i, b]].tolist(), stop_ids),
                                                float(finished_scores[i, b])) for b in range(num_return_sequences)]
        if bool(done.all()):
            break
        rows = (torch.arange(n, device=device)[:, None] * beams + parent).flatten()  # engine row of each new beam
        history = torch.cat([history[rows], running[:, :, -1].reshape(-1, 1)], dim=1)
        if bool(done.any()):
            live = (~done).nonzero().squeeze(1)
            alive, running, running_scores = alive[live], running[live], running_scores[live]
            finished, finished_scores, is_finished = finished[live], finished_scores[live], is_finished[live]
            finished_lengths = finished_lengths[live]
            rows = rows.view(n, beams)[live].flatten()
            history = history.view(n, beams, -1)[live].flatten(0, 1)
        engine.select(rows)
        logits = engine.step(running[:, :, -1].reshape(-1, 1))[:, -1]
    return [results[i] for i in range(prompts)]


def _until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:i]
    return tokens
