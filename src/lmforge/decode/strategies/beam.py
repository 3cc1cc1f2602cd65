"""Beam search, step for step the algorithm of HF `generate` (transformers 5), so outputs match.

Each step keeps the 2·beams best continuations over all beams of a prompt; those ending in a stop
token become finished hypotheses scored sum(log p) / length**length_penalty, the best `beams`
unfinished ones run on. A prompt is done when no running beam can beat its worst finished one
(`early_stopping=False`, HF's heuristic), when it holds `beams` finished ones (`True`), or at
`max_new_tokens`. Done prompts leave the batch; the prompt is run once and then copied per beam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import torch

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.sampling import StopCheck
from lmforge.decode.strategy_params import BeamParams as Params

UNSET = -1.0e9  # HF's score for "no hypothesis here"


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor (prompts, n, ...) gathered along dim 1 by index (prompts, m)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return tensor.gather(1, index.expand(*index.shape[:2], *tensor.shape[2:]))


@dataclass
class Beams:
    """The beam state of some units (a prompt, or one group of a prompt's beams): (units, beams, ...) tensors."""

    running: torch.Tensor  # (units, beams, length) generated tokens of the open beams
    running_scores: torch.Tensor  # (units, beams) their summed log-probs
    finished: torch.Tensor  # (units, beams, length) kept finished hypotheses (padded)
    finished_scores: torch.Tensor  # (units, beams) their length-penalised scores
    is_finished: torch.Tensor  # (units, beams)
    finished_lengths: torch.Tensor  # (units, beams)
    running_logprobs: torch.Tensor  # (units, beams, length) each token's log-prob (after rules) on its beam's path
    finished_logprobs: torch.Tensor  # (units, beams, length) the same for the kept finished hypotheses

    @classmethod
    def start(cls, units: int, beams: int, device: torch.device) -> Beams:
        running_scores = torch.zeros((units, beams), device=device)
        running_scores[:, 1:] = UNSET  # all beams start equal: only the first may expand
        empty = torch.zeros((units, beams, 0), dtype=torch.long, device=device)
        return cls(empty, running_scores, empty.clone(), torch.full((units, beams), UNSET, device=device),
                   torch.zeros((units, beams), dtype=torch.bool, device=device),
                   torch.zeros((units, beams), dtype=torch.long, device=device),
                   torch.zeros((units, beams, 0), device=device), torch.zeros((units, beams, 0), device=device))

    def take(self, units: torch.Tensor) -> Beams:
        return Beams(*(getattr(self, f.name)[units] for f in fields(self)))

    @classmethod
    def join(cls, parts: list[tuple[torch.Tensor, Beams]], units: int) -> Beams:
        """One state of `units` units from (units, state) parts that cover them all."""
        values = {}
        for f in fields(cls):
            sample = getattr(parts[0][1], f.name)
            whole = sample.new_zeros((units, *sample.shape[1:]))
            for index, part in parts:
                whole[index] = getattr(part, f.name)
            values[f.name] = whole
        return cls(**values)


def advance(state: Beams, logprobs: torch.Tensor, length: int, max_new_tokens: int, stops: torch.Tensor,
            length_penalty: float, early_stopping: bool | Literal["never"],
            stop_check: StopCheck | None) -> tuple[Beams, torch.Tensor, torch.Tensor]:
    """One step of HF 5's beam search for every unit: (new state, parent beam of each new beam (units, beams),
    which units are done (units,)). `logprobs` is (units, beams, vocab), rules already applied."""
    units, beams, vocab = logprobs.shape
    keep = max(2, 1 + stops.numel()) * beams  # candidates per unit per step
    totals = (logprobs + state.running_scores[:, :, None]).view(units, beams * vocab)
    top_scores, top_index = torch.topk(totals, keep)  # (units, keep)
    source_beam, token = top_index // vocab, top_index % vocab
    candidates = torch.cat([_gather(state.running, source_beam), token[:, :, None]], dim=2)  # (units, keep, length)
    token_logprobs = logprobs.view(units, beams * vocab).gather(1, top_index)  # (units, keep)
    candidate_logprobs = torch.cat([_gather(state.running_logprobs, source_beam), token_logprobs[:, :, None]], dim=2)
    hits = torch.isin(token, stops) | (length == max_new_tokens)
    if stop_check is not None:
        hits |= torch.tensor([[stop_check(c) for c in row] for row in candidates.tolist()], device=hits.device)
    # the best unfinished candidates run on
    open_scores = top_scores + hits.float() * UNSET
    chosen = torch.topk(open_scores, beams).indices  # (units, beams)
    running, running_scores, parent = _gather(candidates, chosen), _gather(open_scores, chosen), _gather(source_beam, chosen)
    # finished candidates among the top `beams` join the kept hypotheses if good enough
    just_finished = hits & (torch.arange(keep, device=hits.device) < beams)
    scores = top_scores / (length ** length_penalty)
    full = state.is_finished.all(dim=1, keepdim=True) & (early_stopping is True)
    scores = scores + full.float() * UNSET + (~just_finished).float() * UNSET
    merged_scores = torch.cat([state.finished_scores, scores], dim=1)
    best = torch.topk(merged_scores, beams).indices
    padded = torch.nn.functional.pad(state.finished, (0, 1), value=0)
    padded_logprobs = torch.nn.functional.pad(state.finished_logprobs, (0, 1), value=0.0)
    new = Beams(running, running_scores, _gather(torch.cat([padded, candidates], dim=1), best), _gather(merged_scores, best),
                _gather(torch.cat([state.is_finished, just_finished], dim=1), best),
                _gather(torch.cat([state.finished_lengths, torch.full_like(token, length)], dim=1), best),
                _gather(candidate_logprobs, chosen), _gather(torch.cat([padded_logprobs, candidate_logprobs], dim=1), best))
    # is a unit done?
    best_length = max_new_tokens if early_stopping == "never" and length_penalty > 0 else length
    best_possible = new.running_scores[:, :1] / (best_length ** length_penalty)
    worst_kept = torch.where(new.is_finished, new.finished_scores.min(dim=1, keepdim=True).values, UNSET)
    improvable = (best_possible > worst_kept).any(dim=1)
    done = ~improvable | (new.is_finished.all(dim=1) & (early_stopping is True)) | hits.all(dim=1) | (length == max_new_tokens)
    return new, parent, done


@torch.no_grad()
def beam_search(engine: Engine, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int], num_beams: int = 4,
                length_penalty: float = 1.0, early_stopping: bool | Literal["never"] = False, num_return_sequences: int = 1,
                stop_check: StopCheck | None = None, num_beam_groups: int = 1, diversity_penalty: float = 0.0,
                explain: bool = False) -> list[list[Candidate]]:
    """The `num_return_sequences` best finished hypotheses of each prompt, best first; with `explain`, each
    carries the log-prob of every token on its path (after rules), which its score sums.

    With `num_beam_groups` > 1 this is diverse beam search (Vijayakumar et al. 2016, arXiv:1610.02424):
    the beams split into groups searched side by side, and each group's log-probs lose
    `diversity_penalty` × (how often groups before it chose the token at this step)."""
    if num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences ({num_return_sequences}) cannot exceed num_beams ({num_beams})")
    if num_beams % num_beam_groups:
        raise ValueError(f"num_beams ({num_beams}) must be a multiple of num_beam_groups ({num_beam_groups})")
    prompts, groups = engine.rows, num_beam_groups
    beams = num_beams // groups  # per unit: one unit per (prompt, group), in that order
    device = engine.device
    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)
    logits = engine.prefill().repeat_interleave(groups * beams, dim=0)  # (units*beams, vocab)
    engine.select(torch.arange(prompts, device=device).repeat_interleave(groups * beams))
    history = engine.first_tokens()  # (units*beams, prompt length)
    alive = torch.arange(prompts * groups, device=device)  # original unit of each live unit
    state = Beams.start(prompts * groups, beams, device)
    kept: dict[int, list[Candidate]] = {}
    for length in range(1, max_new_tokens + 1):
        n = alive.numel()
        logprobs = apply_rules(rules, history, logits.log_softmax(dim=-1)).view(n, beams, -1)
        if groups == 1:
            state, parent, done = advance(state, logprobs, length, max_new_tokens, stops, length_penalty, early_stopping,
                                          stop_check)
        else:
            state, parent, done = _advance_groups(state, logprobs, alive, groups, diversity_penalty, length, max_new_tokens,
                                                  stops, length_penalty, early_stopping, stop_check)
        for i in done.nonzero().squeeze(1).tolist():
            kept[int(alive[i])] = [_candidate(state, i, b, stop_ids, explain) for b in range(beams)]
        if bool(done.all()):
            break
        rows = (torch.arange(n, device=device)[:, None] * beams + parent).flatten()  # engine row of each new beam
        history = torch.cat([history[rows], state.running[:, :, -1].reshape(-1, 1)], dim=1)
        if bool(done.any()):
            live = (~done).nonzero().squeeze(1)
            alive, state = alive[live], state.take(live)
            rows = rows.view(n, beams)[live].flatten()
            history = history.view(n, beams, -1)[live].flatten(0, 1)
        engine.select(rows)
        logits = engine.step(state.running[:, :, -1].reshape(-1, 1))[:, -1]
    return [sorted((c for g in range(groups) for c in kept[p * groups + g]), key=lambda c: -c.score)[:num_return_sequences]
            for p in range(prompts)]


def _advance_groups(state: Beams, logprobs: torch.Tensor, alive: torch.Tensor, groups: int, penalty: float,
                    *args) -> tuple[Beams, torch.Tensor, torch.Tensor]:
    """`advance` one group at a time, each group's log-probs penalised by the tokens earlier groups of the
    same prompt chose at this step (HF's Hamming diversity)."""
    prompt_of, group_of = alive // groups, alive % groups
    parent = torch.zeros(state.running_scores.shape, dtype=torch.long, device=logprobs.device)
    done = torch.zeros(alive.shape, dtype=torch.bool, device=logprobs.device)
    counts = torch.zeros((int(prompt_of.max()) + 1, logprobs.shape[-1]), device=logprobs.device)  # (prompts, vocab)
    parts = []
    for group in range(groups):
        units = (group_of == group).nonzero().squeeze(1)
        if not units.numel():
            continue
        scores = logprobs[units] - penalty * counts[prompt_of[units]][:, None, :]
        part, parent[units], done[units] = advance(state.take(units), scores, *args)
        parts.append((units, part))
        chosen = part.running[:, :, -1]  # (units, beams)
        counts.index_put_((prompt_of[units][:, None].expand_as(chosen), chosen), torch.ones_like(chosen, dtype=counts.dtype),
                          accumulate=True)
    state = Beams.join(parts, alive.numel())
    return state, parent, done


def _candidate(state: Beams, unit: int, beam: int, stop_ids: list[int], explain: bool) -> Candidate:
    length = int(state.finished_lengths[unit, beam])
    tokens = _until_stop(state.finished[unit, beam, :length].tolist(), stop_ids)
    steps = [{"token": t, "logprob": float(lp), "top": []}
             for t, lp in zip(tokens, state.finished_logprobs[unit, beam, :len(tokens)].tolist(), strict=True)] if explain else []
    return Candidate(tokens, float(state.finished_scores[unit, beam]), steps)


def _until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:i]
    return tokens


def decode(engine: Engine, params: Params, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    return beam_search(engine, rules, limits.max_new_tokens, limits.stop_ids, **params.model_dump(),
                       stop_check=limits.stop_check, explain=limits.explain > 0)


STRATEGY = DecodingStrategy(Params, decode)
