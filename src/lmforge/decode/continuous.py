"""Continuous batching: the rows of many requests decoded together, one token per row per step.

A request joins the running batch after any step (its prompts are prefilled on their own, then their
cache is merged into the batch's, see `Engine.merge`) and leaves as soon as its last row stops, so a
short answer never waits for a long one and a new request never waits for the batch to drain. Each
request keeps its own rules, seed, stop strings and length; greedy and sampling decode this way. On a
llama.cpp runtime, every request's rows are sequences of its one context (`LlamaCppEngine.merge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from lmforge.decode.batch_request import Abandoned, Request
from lmforge.decode.engine import BASE_ROWS, Engine
from lmforge.decode.generate import (
    build_rules,
    output_automaton,
    pad_id_of,
    stop_string_check,
    stop_token_ids,
)
from lmforge.decode.llama_cpp_engine import LlamaCppEngine
from lmforge.decode.llama_cpp_runtime import LlamaCppModel
from lmforge.decode.params import DecodeParams
from lmforge.decode.row_outputs import cells_of, copies_of, grouped_candidates, prompt_listener
from lmforge.decode.strategies.sampling import (
    OnTokens,
    RowOutputs,
    argmax_choice,
    choose_next,
    sampled_choice,
    still_running,
)
from lmforge.decode.strategy_params import STRATEGY_PARAMS

CONTINUOUS = tuple(name for name, params in STRATEGY_PARAMS.items() if params.continuous)  # greedy, sample


def merges_caches(model: PreTrainedModel) -> bool:
    """Decoder-only models whose every cache layer is a plain full-attention one (no sliding window)."""
    if model.config.is_encoder_decoder:
        return False
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    return all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass
class _Rows:
    """The rows of one request in the batch, in batch order."""

    request: Request
    rules: list
    choose: Callable[[torch.Tensor], torch.Tensor]
    history: torch.Tensor  # (alive rows, length): what the rules see, as in `token_by_token`
    alive: list[int]  # the request's row of each live row
    outputs: RowOutputs
    stop_check: Callable[[list[int]], bool] | None
    taken: int = 0  # tokens generated so far per live row
    copies: int = 1
    on_tokens: OnTokens | None = field(default=None, repr=False)


class ContinuousBatch:
    """Requests joining and leaving one batch on `model` (the caller decides how many rows it may hold); with
    `runtime`, llama.cpp runs the forward passes."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 runtime: LlamaCppModel | None = None, mixed_adapters: bool = False) -> None:
        """`mixed_adapters`: `model` is a peft model serving several adapters; each request's rows decode with
        its `adapter` in the same batch."""
        self.model, self.tokenizer, self.runtime = model, tokenizer, runtime
        self.mixed_adapters = mixed_adapters
        self.engine_name = "torch" if runtime is None else "llama.cpp"
        self.pad_id = pad_id_of(tokenizer)
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        self.engine: Engine | None = None
        self.logits: torch.Tensor | None = None  # (rows, vocab): next-token logits of every row
        self.members: list[_Rows] = []  # in batch order
        self.steps = 0
        self.merges = runtime is not None or merges_caches(model)

    def takes(self, params: DecodeParams) -> bool:
        """Whether a request decoded with `params` can join this batch (greedy or sampling on this batch's
        engine, weights as loaded, a dynamic cache)."""
        return (self.merges and params.strategy in CONTINUOUS and params.engine in (self.engine_name, "auto")
                and (params.weights == "fp32" or self.runtime is not None) and not params.image_weight
                and not params.image_gate and params.cache == "dynamic")

    @property
    def rows(self) -> int:
        return 0 if self.engine is None else self.engine.rows

    @staticmethod
    def rows_of(request: Request) -> int:
        """Rows `request` takes in the batch (sampling's num_return_sequences copies each prompt)."""
        return len(request.prompts) * copies_of(request.params)

    def cells_of(self, request: Request) -> int:
        """KV cells `request` may come to hold on llama.cpp: each row's prompt and every token it may add."""
        return cells_of(request.prompts, request.params, request.max_new_tokens)

    def fits(self, *requests: Request) -> bool:
        """Whether the batch's requests and `requests` all fit llama.cpp's KV cache at their longest (always on
        torch, whose cache grows): a server on llama.cpp keeps one shared cache of the model's context, as
        llama-server does, and requests wait for room instead of failing when it is full."""
        if self.runtime is None:
            return True
        held = sum(self.cells_of(member.request) for member in self.members)
        return held + sum(self.cells_of(r) for r in requests) <= self.runtime.cells - len(self.runtime.cached)

    def detach_logits(self) -> None:
        """The batch's logits copied out of llama.cpp's buffer (on a runtime), which a wave run between two steps
        overwrites."""
        if self.runtime is not None and self.logits is not None:
            self.logits = self.logits.clone()

    def room_for_wave(self, request: Request) -> bool:
        """Whether a wave of `request` may run between two steps (always: the server reserved its room)."""
        return True

    @torch.no_grad()
    def add(self, *requests: Request) -> None:
        """Prefill the requests' prompts together (one forward pass) and merge them into the batch; a request
        that cannot start gets the error in its future and the others go on."""
        engine = None
        try:
            prompts = [p for request in requests for p in request.prompts for _ in range(copies_of(request.params))]
            width = max(len(p) for p in prompts)  # the joint prompt length the rules count generated tokens from
            members = [self._member(request, width) for request in requests]
            engine = self._engine(requests, prompts)
            if self.runtime is not None and self.logits is not None:
                self.logits = self.logits.clone()  # a view of llama.cpp's logits, which the prefill overwrites
            logits = engine.prefill()
            if self.engine is not None:
                self.engine.merge(engine)  # checks before it changes anything
        except Exception as error:  # noqa: BLE001 — find the request at fault, start the others
            if engine is not None:
                engine.close()
            if len(requests) == 1:
                requests[0].future.set_exception(error)
            else:
                for request in requests:
                    self.add(request)
            return
        start = 0
        for member in members:
            rows = len(member.alive)
            member.history = engine.prompt_ids[start:start + rows]
            start += rows
        if self.engine is None:
            self.engine, self.logits = engine, logits
        else:
            self.logits = torch.cat([self.logits, logits])
        self.members.extend(members)

    def _engine(self, requests: tuple[Request, ...], prompts: list[list[int]]) -> Engine | LlamaCppEngine:
        """An engine for the joining rows, on this batch's model or llama.cpp runtime."""
        if self.runtime is None:
            names = [request.adapter or BASE_ROWS for request in requests for _ in range(self.rows_of(request))] \
                if self.mixed_adapters else None
            return Engine(self.model, prompts, self.pad_id, adapter_names=names)
        return LlamaCppEngine(self.runtime, prompts, self.pad_id, max(r.max_new_tokens for r in requests),
                              prefix_cache=all(r.params.prefix_cache for r in requests))

    def _member(self, request: Request, prompt_length: int) -> _Rows:
        """The rows of `request`, before its prompts are run (their history comes with the prefill)."""
        params = request.params
        rows, copies = self.rows_of(request), copies_of(params)
        generator = torch.Generator(self.device).manual_seed(params.seed) if params.seed is not None else None
        choose = sampled_choice(generator) if params.strategy == "sample" else argmax_choice
        automaton = output_automaton(params, self.tokenizer, self.stop_ids)  # compiled once per pattern, then cached
        rules = build_rules(params, self.tokenizer, prompt_length, self.stop_ids, automaton)
        return _Rows(request, rules, choose, torch.empty(0), list(range(rows)), RowOutputs.empty(rows),
                     stop_string_check(self.tokenizer, request.stop_strings), copies=copies,
                     on_tokens=prompt_listener(request.on_tokens, copies))

    def fail_all(self, error: BaseException) -> None:
        """Hand `error` to every request in the batch and empty it (the batch step itself failed)."""
        for member in self.members:
            if not member.request.future.done():
                member.request.future.set_exception(error)
        if self.engine is not None:
            self.engine.close()
        self.members, self.engine, self.logits = [], None, None

    @torch.no_grad()
    def step(self) -> None:
        """One token for every row; requests whose rows all stopped leave the batch and hear their result."""
        if self.engine is None:
            return
        keep_rows: list[int] = []
        next_tokens: list[torch.Tensor] = []
        offset, staying = 0, []
        for member in self.members:
            count = len(member.alive)
            logits = self.logits[offset:offset + count]
            if member.request.abandoned:
                member.request.future.set_exception(Abandoned("the request was abandoned (client gone or timed out)"))
                offset += count
                continue
            try:
                kept, tokens = self._advance(member, logits)
            except Exception as error:  # noqa: BLE001 — this request fails, the batch goes on
                member.request.future.set_exception(error)
                offset += count
                continue
            keep_rows += [offset + row for row in kept]
            next_tokens.append(tokens)
            offset += count
            if member.alive:
                staying.append(member)
            else:
                member.request.future.set_result(grouped_candidates(member.outputs, member.copies))
        self.members = staying
        self.steps += 1
        if not keep_rows:
            self.engine.close()
            self.engine = self.logits = None
            return
        self.engine.select(torch.tensor(keep_rows))
        self.engine.compact()
        self.logits = self.engine.step(torch.cat(next_tokens)[:, None])[:, -1]

    def _advance(self, member: _Rows, logits: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Choose and record `member`'s next tokens; (its rows that go on, their tokens)."""
        tokens, done = choose_next(logits, member.history, member.alive, member.rules, member.choose, self.stop_ids,
                                   member.outputs, member.stop_check, member.on_tokens, member.request.params.explain)
        member.taken += 1
        if member.taken >= member.request.max_new_tokens:
            done = [True] * len(done)
        kept = still_running(done, tokens.device)
        member.history = torch.cat([member.history, tokens[:, None]], dim=1)[kept]
        member.alive = [member.alive[i] for i in kept.tolist()]
        return kept.tolist(), tokens[kept]

