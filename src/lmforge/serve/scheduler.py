"""One worker thread owns the model; requests wait in a bounded queue and decode in a continuous batch.

Greedy and sampled requests (streamed or not) join the running batch after any decoding step and
leave it as soon as they stop (`decode/continuous.py`). Other strategies (beam, contrastive,
speculative, …) decode in waves: once the batch has drained, the oldest such request runs together
with every waiting request that decodes the same way; a wave that has waited `wave_wait_s` runs between
two steps of the batch instead (the batch pauses for it), so a long stream cannot hold it back. A full queue refuses new work at once (the
server answers 429); an abandoned request (client gone, time out) leaves the batch at the next step.

A strategy network's requests are routed first (the router names each prompt's expert): the batch holds
one expert's rows at a time, and a request for another expert waits for it to drain, as a wave does; a
request whose prompts go to several experts decodes expert by expert.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmforge.decode.batch_request import Request
from lmforge.errors import ModelError
from lmforge.models.openmp import release_openmp_threads

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmforge.decode.llama_cpp_runtime import LlamaCppModel


class QueueFull(Exception):
    """The scheduler's queue is full; try again later."""


@dataclass
class Experts:
    """A strategy network's experts as the scheduler uses them: `route(prompts)` names each prompt's expert
    (the router's pick), `switch(name)` turns that expert on."""

    route: Callable[[list[list[int]]], list[str]]
    switch: Callable[[str], None]


@dataclass
class Job(Request):
    """A request to the scheduler (see `Request`); `routes` holds each prompt's expert once routed."""

    routes: list[str] | None = None
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def expert(self) -> str | None:
        """The one expert all the prompts went to (None when unrouted or split between experts)."""
        return self.routes[0] if self.routes and len(set(self.routes)) == 1 else None

    def joins(self, other: Job) -> bool:
        """Whether `other` can decode in the same wave as this job."""
        return (self.on_tokens is None and other.on_tokens is None and self.params == other.params
                and self.max_new_tokens == other.max_new_tokens and self.stop_strings == other.stop_strings
                and self.adapter == other.adapter
                and (self.routes is None or (self.expert is not None and self.expert == other.expert)))

    def abandon(self) -> None:
        """Give up on this job: it leaves the queue or the batch without decoding further."""
        self.abandoned = True
        self.future.cancel()  # succeeds only while it waits


class Scheduler:
    """Runs jobs on `model` in a worker thread: a continuous batch of up to `max_batch` rows; with `experts`
    (a strategy network), each job decoded by the experts its prompts are routed to; a wave waits at most
    `wave_wait_s` for the batch to drain (for a single model). A server on llama.cpp alone passes no `model`, its
    torch-free `batch` (decode/light_batch.py) and `load_model`, which loads the torch model its waves need."""

    def __init__(self, model: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase, precision: str = "fp32",
                 max_queue: int = 64, max_batch: int = 8, experts: Experts | None = None, wave_wait_s: float = 2.0,
                 runtime: LlamaCppModel | None = None, mixed_adapters: bool = False, batch: Any = None,
                 load_model: Callable[[], PreTrainedModel] | None = None) -> None:
        self.tokenizer, self.precision, self.max_batch = tokenizer, precision, max_batch
        self._model, self._load_model = model, load_model
        self.wave_wait_s = wave_wait_s
        self.experts, self.active_expert = experts, None
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        if batch is None:
            from lmforge.decode.continuous import ContinuousBatch

            batch = ContinuousBatch(model, tokenizer, runtime, mixed_adapters)
        self.batch = batch
        self.waves = 0  # batches decoded outside the continuous batch
        self._held: list[Job] = []  # taken from the queue, not yet decoding
        self._wave_rows = 0
        self.last_progress = time.monotonic()  # the end of the last decoding step or wave
        release_openmp_threads()  # the worker's OpenMP team is then the only one (models/openmp.py)
        self._worker = threading.Thread(target=self._serve, name="lmforge-scheduler", daemon=True)
        self._worker.start()

    @property
    def model(self) -> PreTrainedModel:
        """The torch model waves decode with (loaded now, the first time, on a server on llama.cpp alone)."""
        if self._model is None:
            if self._load_model is None:
                raise ModelError("this server decodes on llama.cpp alone and loads no torch model; start it with "
                                 "--engine torch for this request's decoding")
            self._model = self._load_model()
        return self._model

    @property
    def waiting(self) -> int:
        return self.jobs.qsize() + len(self._held)

    @property
    def running(self) -> int:
        """Rows decoding now."""
        return self.batch.rows + self._wave_rows

    def seconds_without_progress(self) -> float:
        """How long requests have been waiting or decoding with no step finished (0 while idle)."""
        if not self.waiting and not self.running:
            return 0.0
        return time.monotonic() - self.last_progress

    def submit(self, job: Job) -> Future:
        """Queue `job`; its future gets one list of candidates per prompt."""
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the queue is full ({self.jobs.maxsize} requests waiting); retry shortly") from None
        return job.future

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish what was submitted, then stop the worker."""
        self.jobs.put(None)
        self._worker.join(timeout_s)

    def _collect(self, block: bool) -> bool:
        """Move queued jobs to the held list (waiting for the first when `block`); whether close() was called."""
        try:
            job = self.jobs.get(block=block)
        except queue.Empty:
            return False
        while job is not None:
            self._held.append(job)
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return False
        return True

    def _serve(self) -> None:
        closing = False
        while True:
            idle = self.batch.rows == 0 and not self._held
            if closing and idle:
                return
            closing = self._collect(block=idle and not closing) or closing
            if idle:
                self.last_progress = time.monotonic()  # work that arrives now starts its clock here
            self._admit()
            try:
                with self._autocast():
                    self.batch.step()
            except Exception as error:  # noqa: BLE001 — the requests in the batch fail; the worker goes on
                self.batch.fail_all(error)
            self.last_progress = time.monotonic()

    def _admit(self) -> None:
        """Start held jobs in order: continuous ones while rows are free (prefilled together); a wave once the
        batch is empty."""
        self._route_held()
        still: list[Job] = []
        joining: list[Job] = []
        rows = self.batch.rows
        blocked = False
        overdue: tuple[Job, list[Job]] | None = None
        for index, job in enumerate(self._held):
            if job.abandoned or job.future.done():
                continue
            if blocked:
                still.append(job)
            elif self.batch.takes(job.params) and self._same_expert(job, rows, joining):
                if (rows + self.batch.rows_of(job) <= self.max_batch and self.batch.fits(*joining, job)) or rows == 0:
                    if job.future.set_running_or_notify_cancel():
                        joining.append(job)
                        rows += self.batch.rows_of(job)
                else:
                    still.append(job)
                    blocked = True  # first come, first served
            elif rows == 0:
                self._held = still + self._wave(job, self._held[index + 1:])
                return
            elif self.experts is None and time.monotonic() - job.queued_at >= self.wave_wait_s and \
                    self.batch.room_for_wave(job):
                overdue = (job, self._held[index + 1:])  # runs now, between two steps of the batch
                break
            else:
                still.append(job)
                blocked = True  # let the batch drain so this job gets its turn
        self._held = still
        if joining:
            self._switch(joining[0].expert)
            with self._autocast():
                self.batch.add(*joining)  # a request that cannot start fails alone
        if overdue is not None:
            self.batch.detach_logits()  # the wave may decode on the batch's llama.cpp context
            self._held = still + self._wave(*overdue)

    def _route_held(self) -> None:
        """Name each held job's prompts' experts (a job the router fails on gets the error)."""
        if self.experts is None:
            return
        for job in self._held:
            if job.routes is None and not job.future.done():
                try:
                    with self._autocast():
                        job.routes = self.experts.route(job.prompts)
                except Exception as error:  # noqa: BLE001 — handed to the request
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(error)

    def _same_expert(self, job: Job, rows: int, joining: list[Job]) -> bool:
        """Whether `job` may join the continuous batch now: the batch holds (or is about to hold) its expert's
        rows, or none; a job split between experts decodes in a wave."""
        if self.experts is None:
            return True
        if job.expert is None:
            return False
        return rows == 0 or job.expert == (joining[0].expert if joining else self.active_expert)

    def _switch(self, expert: str | None) -> None:
        if expert is not None and expert != self.active_expert:
            self.experts.switch(expert)
            self.active_expert = expert

    def _wave(self, first: Job, later: list[Job]) -> list[Job]:
        """Decode `first` with every later job that joins it (within max_batch prompts); the jobs left over."""
        wave, rows, left = [first], len(first.prompts), []
        for job in later:
            if first.joins(job) and rows + len(job.prompts) <= self.max_batch and not job.abandoned:
                wave.append(job)
                rows += len(job.prompts)
            else:
                left.append(job)
        live = [job for job in wave if job.future.set_running_or_notify_cancel()]
        if live:
            prompts = [p for job in live for p in job.prompts]
            self._wave_rows, self.waves = len(prompts), self.waves + 1
            try:
                routes = [route for job in live for route in job.routes or [None] * len(job.prompts)]
                outputs = self._decode_wave(first, prompts, routes)
            except Exception as error:  # noqa: BLE001 — handed to each waiting request
                for job in live:
                    job.future.set_exception(error)
            else:
                start = 0
                for job in live:
                    job.future.set_result(outputs[start:start + len(job.prompts)])
                    start += len(job.prompts)
            finally:
                self._wave_rows = 0
        return left

    def _decode_wave(self, first: Job, prompts: list[list[int]], routes: list[str | None]) -> list:
        """Candidates per prompt, decoded the way `first` asks, each expert's prompts with that expert on."""
        from lmforge.decode.generate import generate
        from lmforge.decode.request import DecodeRequest

        outputs: list = [None] * len(prompts)
        for expert in dict.fromkeys(routes):
            rows = [i for i, route in enumerate(routes) if route == expert]
            self._switch(expert)
            on_tokens = first.on_tokens if first.on_tokens is None or len(rows) == len(prompts) else \
                (lambda heard, tokens, rows=rows: first.on_tokens([rows[i] for i in heard], tokens))
            with self._adapter(first.adapter):
                found = generate(self.model, self.tokenizer, DecodeRequest([prompts[i] for i in rows], first.params,
                                                                           first.max_new_tokens, first.stop_strings,
                                                                           batch_size=len(rows),
                                                                           precision=self.precision,
                                                                           on_tokens=on_tokens))
            for row, candidates in zip(rows, found, strict=True):
                outputs[row] = candidates
        return outputs

    def _adapter(self, name: str | None):
        """The wave's adapter switched on (a model serving several; None: the base alone)."""
        if not self.batch.mixed_adapters:
            return contextlib.nullcontext()
        from lmforge.models.adapters import adapter_on

        return adapter_on(self.model, name)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        from lmforge.models.precision import autocast_for

        return autocast_for(self.precision, self.batch.device)

