"""Speculative decoding: greedy output, several tokens per forward pass of the model.

A *proposer* drafts the next tokens cheaply — from the text itself (prompt lookup) or from a small
draft model — and one forward pass of the model scores the whole draft. The longest prefix that
greedy decoding would have chosen is kept together with the model's own next token (Leviathan et
al. 2023, arXiv:2211.17192, greedy case). Each kept token is the argmax given exactly the tokens
before it, so the output is greedy's (up to float rounding between one-token and several-token
forward passes). Rows run one at a time, since their accepted lengths differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine
from lmforge.decode.rules import Rule, apply_rules
from lmforge.decode.strategies.base import DecodingStrategy, Limits
from lmforge.decode.strategies.sampling import OnTokens, StopCheck
from lmforge.decode.strategy_params import SpeculativeParams as Params
from lmforge.errors import ConfigError
from lmforge.models.resolve import resolve_model

#: (the row's tokens so far, most tokens wanted) -> drafted next tokens (possibly none)
Proposer = Callable[[list[int], int], list[int]]


@torch.no_grad()
def speculative_decode(engine: Engine, make_proposer: Callable[[list[int]], Proposer], rules: Sequence[Rule],
                       max_new_tokens: int, stop_ids: list[int], draft_tokens: int, stop_check: StopCheck | None = None,
                       on_tokens: OnTokens | None = None) -> list[Candidate]:
    """Greedy continuations of every row of `engine`; `make_proposer(prompt)` gives each row its drafter."""
    if engine.encoder_decoder:
        raise ConfigError("speculative strategies (prompt_lookup, speculative) need a decoder-only model; "
                          "use greedy for encoder-decoder models")
    prompts = engine.prompts()
    if engine.rows == 1:
        return [_verify_row(engine, make_proposer(prompts[0]), rules, max_new_tokens, stop_ids, draft_tokens, stop_check,
                            on_tokens, padding=[])]
    return [_verify_row(engine.alone(prompt), make_proposer(prompt), rules, max_new_tokens,
                        stop_ids, draft_tokens, stop_check,
                        None if on_tokens is None else lambda rows, tokens, i=i: on_tokens([i], tokens),
                        padding=[engine.pad_id] * (engine.prompt_length - len(prompt)))
            for i, prompt in enumerate(prompts)]


def _verify_row(engine: Engine, propose: Proposer, rules: Sequence[Rule], max_new_tokens: int, stop_ids: list[int],
                draft_tokens: int, stop_check: StopCheck | None, on_tokens: OnTokens | None,
                padding: list[int]) -> Candidate:
    """One row; rules see it left-padded by `padding`, as in the batch it came from."""
    stops = set(stop_ids)
    sequence = engine.prompts()[0]
    generated: list[int] = []
    logprob_sum = 0.0
    logits = engine.prefill()[:, None]  # (1, 1, vocab): the scores for the next token
    pending: list[int] = []  # the last chosen token, not yet run through the model
    while True:
        draft = propose(sequence, min(draft_tokens, max_new_tokens - len(generated) - 1)) if pending else []
        if pending:
            logits = engine.step(torch.tensor([pending + draft], device=engine.device), keep=len(draft) + 1)
        accepted, stopped = [], False
        logprobs = logits[0].log_softmax(-1)  # (draft + 1, vocab)
        unruled = [] if rules else logits[0].argmax(-1).tolist()  # without rules, every position's choice at once
        for j in range(len(draft) + 1):  # logits[:, j] scores the token after draft[:j]
            if rules:
                history = torch.tensor([padding + sequence + accepted], device=engine.device)
                token = int(apply_rules(rules, history, logits[:, j]).argmax(-1))
            else:
                token = unruled[j]
            if token in stops:
                stopped = True
                break
            logprob_sum += float(logprobs[j, token])
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
            return Candidate(generated, logprob_sum / max(len(generated), 1))
        if pending:  # keep the pending token and the draft tokens that matched
            engine.crop(engine.length - len(draft) + len(accepted) - 1)
        sequence += accepted
        pending = [accepted[-1]]


class DraftModel:
    """Drafts greedily with a small model sharing the tokenizer, its cache kept in step with the row."""

    def __init__(self, model: PreTrainedModel, prompt: list[int], pad_id: int):
        self.engine = Engine(model, [prompt], pad_id)
        self.seen = list(prompt)  # tokens in the draft model's cache
        self.logits = self.engine.prefill()  # (1, vocab) after `seen`

    def __call__(self, sequence: list[int], count: int) -> list[int]:
        common = next((i for i, (a, b) in enumerate(zip(self.seen, sequence, strict=False)) if a != b),
                      min(len(self.seen), len(sequence)))
        if common < len(self.seen):  # drop the rejected part of the last draft
            self.engine.crop(common - 1 if common == len(sequence) else common)
            self.seen = self.seen[:common]
            if common == len(sequence):  # need the logits after the last kept token again
                self.seen = self.seen[:-1]
        if len(self.seen) < len(sequence):
            self.logits = self.engine.step(torch.tensor([sequence[len(self.seen):]], device=self.engine.device))[:, -1]
            self.seen = list(sequence)
        draft: list[int] = []
        for _ in range(count):
            token = int(self.logits.argmax(-1))
            draft.append(token)
            self.logits = self.engine.step(torch.tensor([[token]], device=self.engine.device))[:, -1]
            self.seen.append(token)
        return draft


@functools.lru_cache(maxsize=2)
def load_draft_model(reference: str, device: torch.device) -> PreTrainedModel:
    """The draft model, from a packaged alias or a local folder (loaded once per process: a server decodes every
    speculative request with the same one)."""
    model = AutoModelForCausalLM.from_pretrained(resolve_model(reference), local_files_only=True)
    return model.to(device).eval()


def load(params: Params, device: torch.device) -> dict:
    return {"draft_model": load_draft_model(params.draft_model, device)}


def decode(engine: Engine, params: Params, rules: Sequence[Rule], limits: Limits) -> list[list[Candidate]]:
    draft = limits.resource("draft_model")
    if draft is None:
        raise ValueError("strategy speculative needs the draft model loaded (decode.draft_model)")
    return [[c] for c in speculative_decode(engine, lambda prompt: DraftModel(draft, prompt, engine.pad_id), rules,
                                            limits.max_new_tokens, limits.stop_ids, params.num_draft_tokens,
                                            limits.stop_check, limits.on_tokens)]


STRATEGY = DecodingStrategy(Params, decode, load=load)
