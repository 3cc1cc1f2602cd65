"""A continuous batch on llama.cpp alone, in numpy: a server's plain requests decoded without importing torch.

`lmforge serve` on llama.cpp starts without torch where it can (serve/light_model.py): torch's libraries and
operator registry alone hold ~200 MB of RSS, more than llama.cpp's whole q8_0 model. This batch runs what most
OpenAI requests ask — greedy or sampling (temperature, top-k, top-p, min-p, n), a seed, logit bias, a minimum
length, stop tokens and strings, a regex / JSON schema (tools, response_format), log-probs — with the same
steps as `continuous.py` on `LlamaCppEngine`: rows join after any step and leave when they stop, each row a
sequence of the runtime's one context, prompts sharing the cached prefix read only the rest. Greedy tokens are
the same as the torch-side batch's (the same logits, the same argmax, first on ties); sampling draws from
numpy's generator, so a seed repeats its own output but not torch's. Anything else decodes in the scheduler's
waves on torch, loaded on first need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lmforge.decode.batch_request import Abandoned, Request
from lmforge.decode.llama_cpp_runtime import LlamaCppModel
from lmforge.decode.params import DecodeParams
from lmforge.decode.row_outputs import (
    OnTokens,
    RowOutputs,
    cells_of,
    copies_of,
    grouped_candidates,
    prompt_listener,
    record_step,
    widest_of,
)
from lmforge.decode.text import StopCheck, output_automaton, stop_string_check

#: the decode fields this batch runs; every other one must keep its default
LIGHT_FIELDS = frozenset({"strategy", "temperature", "top_k", "top_p", "min_p", "num_return_sequences", "logit_bias",
                          "regex", "json_schema", "min_new_tokens", "seed", "weights", "explain", "engine",
                          "prefix_cache"})
_DEFAULTS = {name: info.get_default(call_default_factory=True) for name, info in DecodeParams.model_fields.items()}
NumpyRule = Callable[[np.ndarray, "_Rows"], np.ndarray]  # (scores (rows, vocab), the request's rows) -> scores


def runs_light(params: DecodeParams) -> bool:
    """Whether this batch decodes `params` (else torch does)."""
    return (params.strategy in ("greedy", "sample") and params.engine in ("auto", "llama.cpp")
            and all(getattr(params, name) == default for name, default in _DEFAULTS.items() if name not in LIGHT_FIELDS))


def light_rules(params: DecodeParams, automaton, stop_ids: list[int]) -> list[NumpyRule]:
    """The rules of `params` in `build_rules`' order: logit bias, the constraint, the minimum length, then
    sampling's filters (the same as `rules.py`'s on the same scores)."""
    rules: list[NumpyRule] = []
    if params.logit_bias:
        ids, bias = np.array(list(params.logit_bias), dtype=np.int64), np.array(list(params.logit_bias.values()),
                                                                               dtype=np.float32)
        rules.append(lambda scores, rows: _add_bias(scores, ids, bias))
    if automaton is not None:
        rules.append(lambda scores, rows: _only_allowed(scores, rows, automaton.allowed, stop_ids))
    if params.min_new_tokens:
        count, stops = params.min_new_tokens, np.array(stop_ids, dtype=np.int64)
        rules.append(lambda scores, rows: _ban(scores, stops) if rows.taken < count else scores)
    if params.strategy == "sample":
        if params.temperature != 1.0:
            rules.append(lambda scores, rows: scores / np.float32(params.temperature))
        if params.top_k is not None:
            rules.append(lambda scores, rows: _top_k(scores, params.top_k))
        if params.top_p is not None:
            rules.append(lambda scores, rows: _top_p(scores, params.top_p))
        if params.min_p is not None:
            rules.append(lambda scores, rows: _min_p(scores, params.min_p))
    return rules


def _row_need(request: Request) -> int:
    """KV cells a row of `request` may come to hold: its longest prompt and every token it may add."""
    return max(len(p) for p in request.prompts) + request.max_new_tokens


def _add_bias(scores: np.ndarray, ids: np.ndarray, bias: np.ndarray) -> np.ndarray:
    scores = scores.copy()
    np.add.at(scores, (slice(None), ids), bias)
    return scores


def _ban(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    scores = scores.copy()
    scores[:, ids] = -np.inf
    return scores


def _only_allowed(scores: np.ndarray, rows: _Rows, allowed, stop_ids: list[int]) -> np.ndarray:
    """Only what the automaton allows after each row's generated tokens; stop tokens where it may end."""
    mask = np.zeros(scores.shape, dtype=bool)
    for row, index in enumerate(rows.alive):
        nexts, may_end = allowed(tuple(rows.outputs.generated[index]))
        mask[row, nexts] = True
        if may_end:
            mask[row, stop_ids] = True
    return np.where(mask, scores, -np.inf).astype(np.float32)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[:, -k:-k + 1]
    return np.where(scores < kth, -np.inf, scores).astype(np.float32)


def _top_p(scores: np.ndarray, p: float) -> np.ndarray:
    order = np.argsort(scores, axis=-1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(_softmax(ordered), axis=-1)
    drop = cumulative <= (1 - p)
    drop[:, -1] = False
    dropped = np.zeros_like(drop)
    np.put_along_axis(dropped, order, drop, axis=-1)
    return np.where(dropped, -np.inf, scores).astype(np.float32)


def _min_p(scores: np.ndarray, p: float) -> np.ndarray:
    probs = _softmax(scores)
    drop = probs < p * probs.max(axis=-1, keepdims=True)
    drop[np.arange(len(scores)), probs.argmax(axis=-1)] = False
    return np.where(drop, -np.inf, scores).astype(np.float32)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _logsumexp(logits: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Each row's log of the sum of its exponentiated logits (what a log-softmax subtracts), computed in `scratch`
    (as large: a fresh array of every row's logits costs more in page faults than the sum itself)."""
    top = logits.max(axis=-1, keepdims=True)
    np.subtract(logits, top, out=scratch)
    np.exp(scratch, out=scratch)
    return top[:, 0] + np.log(scratch.sum(axis=-1))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def explain_row(token: int, logprob: float, logprobs: np.ndarray, alternatives: int) -> dict:
    """One generated token with its log-probability and the most likely alternatives (`explain_step`'s form)."""
    best = np.argpartition(logprobs, -alternatives)[-alternatives:]
    best = best[np.argsort(-logprobs[best], kind="stable")]
    return {"token": token, "logprob": logprob, "top": [(int(i), float(logprobs[i])) for i in best]}


@dataclass
class _Rows:
    """One request's live rows in the batch, in batch order."""

    request: Request
    rules: list[NumpyRule]
    rng: np.random.Generator | None  # sampling's draws (None: greedy)
    alive: list[int]  # the request's row of each live row
    sequences: list[int]  # llama.cpp's sequence of each live row
    positions: list[int]  # each live row's next position
    outputs: RowOutputs
    stop_check: StopCheck | None
    copies: int
    on_tokens: OnTokens | None = field(default=None, repr=False)
    taken: int = 0  # tokens generated so far per live row


@dataclass
class _Joining:
    """A request's rows waiting for their prompts to be read, in the next step's llama.cpp call (each prompt's
    first row's sequence; its other rows copy it once read)."""

    member: _Rows
    starts: list[int]  # per prompt: the tokens its sequence already holds (the cached prefix it shares)
    remember: bool  # its first prompt becomes the cached prefix, once read


class LightBatch:
    """Requests joining and leaving one batch on llama.cpp (`runtime`, at `weights`), decoded in numpy; the
    scheduler's interface of `ContinuousBatch`. A joining request's prompts are read in the same llama.cpp call
    as the running rows' next tokens, as llama-server does (llama.cpp takes a prompt's first token with the rows'
    and the rest in a pass of its own)."""

    mixed_adapters = False
    device = "cpu"

    def __init__(self, runtime: LlamaCppModel, tokenizer, stop_ids: list[int], weights: str = "fp32",
                 rows: int = 8, cells: int = 4096) -> None:
        """`rows` sequences of llama.cpp's context, each a KV stream of an equal share of `cells` (as llama-server's
        slots: a row attends to its own cells, not to every row's, 12-14% faster at 16 rows than one shared
        cache); while idle, the context is remade for a request that needs more rows or longer ones."""
        self.runtime, self.tokenizer, self.stop_ids, self.weights = runtime, tokenizer, stop_ids, weights
        self.sequences, self.cells = rows, cells
        self.row_cells = max(cells // (rows + 1), 256)  # the prefix cache holds a stream too
        runtime.layout(rows, self.row_cells)
        self.members: list[_Rows] = []  # rows with logits, in batch order
        self.joining: list[_Joining] = []  # rows whose prompts the next step reads
        self.logits: np.ndarray | None = None  # (rows, vocab): every member row's next-token logits
        self._scratch = np.empty((0, 0), dtype=np.float32)
        self.steps = 0

    def takes(self, params: DecodeParams) -> bool:
        return params.weights == self.weights and runs_light(params)

    @property
    def rows(self) -> int:
        return sum(len(member.alive) for member in self.members) + sum(len(j.member.alive) for j in self.joining)

    @staticmethod
    def rows_of(request: Request) -> int:
        return len(request.prompts) * copies_of(request.params)

    def fits(self, *requests: Request) -> bool:
        """Whether the batch's requests and `requests` all fit llama.cpp's KV cache at their longest, and its
        free sequences hold their rows (a request that needs more joins the empty batch, which makes room)."""
        if sum(self.rows_of(r) for r in requests) > len(self.runtime.free):
            return False
        if self.runtime.row_cells is not None:  # a stream a row
            return all(_row_need(r) <= self.runtime.row_cells for r in requests)
        held = [m.request for m in self.members] + [j.member.request for j in self.joining]
        cells = sum(cells_of(r.prompts, r.params, r.max_new_tokens) for r in [*held, *requests])
        return cells <= self.runtime.cells - len(self.runtime.cached)

    def room_for_wave(self, request: Request) -> bool:
        """Whether a wave of `request` may run between two steps of the batch: on llama.cpp it needs its rows'
        sequences free (beams claim their copies before they let go) and long enough, else it waits for the batch
        to drain."""
        if request.params.engine != "llama.cpp":
            return True
        return (2 * len(request.prompts) * widest_of(request.params) <= len(self.runtime.free)
                and (self.runtime.row_cells is None or _row_need(request) <= self.runtime.row_cells))

    def _layout(self, requests: tuple[Request, ...]) -> tuple[int, int]:
        """(sequences, cells each) for an idle batch taking `requests`: the batch's own layout where they fit it,
        else streams long enough for them, as many as `cells` holds (and at least their rows)."""
        need, rows = max(_row_need(r) for r in requests), sum(self.rows_of(r) for r in requests)
        if need <= self.row_cells and rows <= self.sequences:
            return self.sequences, self.row_cells
        row_cells = max(need, self.row_cells)
        return max(rows, self.cells // row_cells - 1, 1), row_cells

    def add(self, *requests: Request) -> None:
        """Take the requests' rows: their sequences, the cached prefix their prompts share; the next step reads
        the rest of their prompts. A request that cannot start gets the error in its future."""
        if not self.rows:  # idle: the layout they need (a wave may have changed it)
            try:
                self.runtime.layout(*self._layout(requests))
            except Exception as error:  # noqa: BLE001 — more rows than llama.cpp holds
                for request in requests:
                    request.future.set_exception(error)
                return
        for request in requests:
            claimed: list[int] = []
            try:
                member = self._member(request)
                claimed += self.runtime.claim(self.rows_of(request))
                cached = request.params.prefix_cache
                starts = [self.runtime.reuse_prefix(prompt, claimed[index * member.copies]) if cached else 0
                          for index, prompt in enumerate(request.prompts)]
            except Exception as error:  # noqa: BLE001 — this request fails, the others join
                self.runtime.release(claimed)
                request.future.set_exception(error)
                continue
            member.sequences = claimed
            member.positions = [len(p) for p in request.prompts for _ in range(member.copies)]
            self.joining.append(_Joining(member, starts, cached))

    def _member(self, request: Request) -> _Rows:
        params, copies = request.params, copies_of(request.params)
        rows = len(request.prompts) * copies
        automaton = output_automaton(params, self.tokenizer, self.stop_ids)  # compiled once per pattern, then cached
        rng = np.random.default_rng(params.seed) if params.strategy == "sample" else None
        return _Rows(request, light_rules(params, automaton, self.stop_ids), rng, list(range(rows)), [], [],
                     RowOutputs.empty(rows), stop_string_check(self.tokenizer, request.stop_strings), copies,
                     prompt_listener(request.on_tokens, copies))

    def fail_all(self, error: BaseException) -> None:
        """Hand `error` to every request in the batch and empty it (the step itself failed)."""
        for member in self.members + [j.member for j in self.joining]:
            if not member.request.future.done():
                member.request.future.set_exception(error)
            self.runtime.release(member.sequences)
        self.members, self.joining, self.logits = [], [], None

    def step(self) -> None:
        """One token for every row, and the joining rows' prompts, in one llama.cpp call; requests whose rows all
        stopped leave the batch and hear their result."""
        staying, chosen, offset = [], {}, 0
        for member in self.members:
            rows, offset = slice(offset, offset + len(member.alive)), offset + len(member.alive)
            if not self._going_on(member):
                continue
            try:
                tokens = self._advance(member, self.logits[rows])
            except Exception as error:  # noqa: BLE001 — this request fails, the batch goes on
                member.request.future.set_exception(error)
                self.runtime.release(member.sequences)
                continue
            if member.alive:
                staying.append(member)
                chosen[id(member)] = tokens
            else:
                member.request.future.set_result(grouped_candidates(member.outputs, member.copies))
        joining = {id(j.member): j for j in self.joining if self._going_on(j.member)}
        members = staying + [j.member for j in joining.values()]
        self.joining, self.steps, self.logits = [], self.steps + 1, None
        if self.runtime.row_cells is not None:
            self._compact(members)
        # llama.cpp reads the rows of consecutive sequence ids in one pass over the weights (with a stream a row):
        # the batch keeps its rows in the order of their ids and the call lists them so
        self.members = sorted(members, key=lambda member: min(member.sequences))
        entries, rows_of, row = [], [], 0  # rows_of: the batch rows each entry's logits are for
        for member in self.members:
            if id(member) in chosen:
                for token, position, sequence in zip(chosen[id(member)], member.positions, member.sequences,
                                                     strict=True):
                    entries.append((token, position, sequence, True))
                    rows_of.append((row,))
                    row += 1
                member.positions = [position + 1 for position in member.positions]
                continue
            for index, (prompt, start) in enumerate(zip(member.request.prompts, joining[id(member)].starts,
                                                        strict=True)):
                sequence = member.sequences[index * member.copies]
                entries += [(prompt[i], i, sequence, i == len(prompt) - 1) for i in range(start, len(prompt))]
                rows_of += [()] * (len(prompt) - start - 1) + [tuple(range(row, row + member.copies))]
                row += member.copies
        if entries:
            self._read(entries, rows_of, row)
        for j in joining.values():
            for index in range(len(j.member.request.prompts)):
                first, *copies = j.member.sequences[index * j.member.copies:(index + 1) * j.member.copies]
                for sequence in copies:
                    self.runtime.copy(first, sequence)
        if remembered := next((j for j in joining.values() if j.remember), None):
            self.runtime.remember(remembered.member.request.prompts[0], remembered.member.sequences[0])

    def _read(self, entries: list[tuple[int, int, int, bool]], rows_of: list[tuple[int, ...]], rows: int) -> None:
        """Run `entries` through llama.cpp in the order of their sequence ids; the batch's logits are then each
        row's (llama.cpp's own buffer where the rows are in that order already: no copy)."""
        order = sorted(range(len(entries)), key=lambda i: entries[i][2])
        logits = self.runtime.decode([entries[i] for i in order])
        take = [0] * rows
        for n, i in enumerate(i for i in order if entries[i][3]):
            for row in rows_of[i]:
                take[row] = n
        self.logits = logits if take == list(range(len(logits))) else logits[take]

    def detach_logits(self) -> None:
        """The batch's logits copied out of llama.cpp's buffer, which a wave run between two steps overwrites."""
        if self.logits is not None:
            self.logits = self.logits.copy()

    def _compact(self, members: list[_Rows]) -> None:
        """Every live row on the lowest sequence ids: a row that holds a higher id than there are rows moves (its
        KV stream copied) to a free lower one, so each step stays one pass over the weights."""
        live = sum(len(member.sequences) for member in members)
        holes = sorted(s for s in self.runtime.free if s < live)
        if not holes:
            return
        high = sorted(((sequence, member, i) for member in members for i, sequence in enumerate(member.sequences)
                       if sequence >= live), key=lambda found: -found[0])
        for hole, (sequence, member, i) in zip(holes, high, strict=False):
            self.runtime.move(sequence, hole)
            member.sequences[i] = hole

    def _going_on(self, member: _Rows) -> bool:
        """Whether `member` stays in the batch (an abandoned request leaves it, its sequences handed back)."""
        if member.request.abandoned:
            member.request.future.set_exception(Abandoned("the request was abandoned (client gone or timed out)"))
            self.runtime.release(member.sequences)
            return False
        return True

    def _advance(self, member: _Rows, logits: np.ndarray) -> list[int]:
        """Choose and record `member`'s next tokens; the tokens of its rows that go on (the others are dropped and
        their sequences handed back). Their log-probs are computed where the answer shows them (logprobs) or orders
        its outputs by them (n > 1), the only places a server shows them: an exp over the whole vocabulary a row
        costs 2.5% of a 16-row q8_0 step."""
        scores = logits
        for rule in member.rules:
            scores = rule(scores, member)
        if member.rng is None:
            tokens = np.argmax(scores, axis=-1)
        else:
            probs = _softmax(scores.astype(np.float64))
            draws = member.rng.random(len(probs))
            tokens = np.array([min(int(np.searchsorted(np.cumsum(row), draw, side="right")), len(row) - 1)
                               for row, draw in zip(probs, draws, strict=True)])
        token_list = tokens.tolist()
        explain = member.request.params.explain
        chosen = [0.0] * len(token_list)
        if explain:
            logprobs = log_softmax(logits)
            chosen = [float(logprobs[row, token]) for row, token in enumerate(token_list)]
        elif member.copies > 1:
            if self._scratch.shape[0] < len(logits):
                self._scratch = np.empty((len(logits), logits.shape[1]), dtype=np.float32)
            lse = _logsumexp(logits, self._scratch[:len(logits)])
            chosen = [float(logits[row, token] - lse[row]) for row, token in enumerate(token_list)]
        done = record_step(member.alive, token_list, self.stop_ids, chosen, member.outputs.generated,
                           member.outputs.logprob_sums, member.stop_check, member.on_tokens)
        if explain:
            for row, (index, token) in enumerate(zip(member.alive, token_list, strict=True)):
                if token not in self.stop_ids:
                    member.outputs.steps[index].append(explain_row(token, chosen[row], logprobs[row], explain))
        member.taken += 1
        if member.taken >= member.request.max_new_tokens:
            done = [True] * len(done)
        kept = [row for row, finished in enumerate(done) if not finished]
        self.runtime.release([s for row, s in enumerate(member.sequences) if done[row]])
        member.alive = [member.alive[row] for row in kept]
        member.sequences = [member.sequences[row] for row in kept]
        member.positions = [member.positions[row] for row in kept]
        return [token_list[row] for row in kept]
