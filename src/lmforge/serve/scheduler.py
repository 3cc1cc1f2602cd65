"""One worker thread owns the model; requests wait in a bounded queue and run in batches.

A waiting request joins the next batch when it decodes the same way (same `DecodeParams`, length and
stop strings): requests that arrive while a batch decodes are served together by the next one. A
full queue refuses new work at once (the server answers 429). Streaming requests run on their own so
their tokens can be handed over as they come.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams


class QueueFull(Exception):
    """The scheduler's queue is full; try again later."""


@dataclass
class Job:
    prompts: list[list[int]]
    params: DecodeParams
    max_new_tokens: int
    stop_strings: list[str]
    on_tokens: Callable[[list[int], list[int]], None] | None = None  # streaming: (prompt rows, their new tokens)
    future: Future = field(default_factory=Future)  # -> list[list[Candidate]], one list per prompt

    def joins(self, other: Job) -> bool:
        """Whether `other` can decode in the same batch as this job."""
        return (self.on_tokens is None and other.on_tokens is None and self.params == other.params
                and self.max_new_tokens == other.max_new_tokens and self.stop_strings == other.stop_strings)


class Scheduler:
    """Runs jobs on `model` in a worker thread, batching compatible waiting jobs up to `max_batch` prompts."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, precision: str = "fp32",
                 max_queue: int = 64, max_batch: int = 8) -> None:
        self.model, self.tokenizer, self.precision, self.max_batch = model, tokenizer, precision, max_batch
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.running = 0  # prompts in the batch being decoded
        self.batches = 0  # batches decoded so far
        self._held: list[Job] = []  # taken from the queue but not compatible with the last batch
        self._worker = threading.Thread(target=self._serve, name="lmforge-scheduler", daemon=True)
        self._worker.start()

    @property
    def waiting(self) -> int:
        return self.jobs.qsize() + len(self._held)

    def submit(self, job: Job) -> Future:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the queue is full ({self.jobs.maxsize} requests waiting); retry shortly") from None
        return job.future

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish what was submitted, then stop the worker."""
        self.jobs.put(None)
        self._worker.join(timeout_s)

    def _next_batch(self) -> list[Job] | None:
        """The oldest waiting job and every later compatible one that fits; the others keep their order."""
        waiting, stop = self._held, False
        self._held = []
        if not waiting:
            first = self.jobs.get()
            if first is None:
                return None
            waiting = [first]
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            waiting.append(job)
        batch, size = [waiting[0]], len(waiting[0].prompts)
        for job in waiting[1:]:
            if waiting[0].joins(job) and size + len(job.prompts) <= self.max_batch:
                batch.append(job)
                size += len(job.prompts)
            else:
                self._held.append(job)
        if stop:
            self.jobs.put(None)  # stop once the held jobs are done too
        return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            prompts = [p for job in live for p in job.prompts]
            self.running, self.batches = len(prompts), self.batches + 1
            try:
                outputs = generate(self.model, self.tokenizer, prompts, live[0].params, live[0].max_new_tokens,
                                   live[0].stop_strings, batch_size=len(prompts), precision=self.precision,
                                   on_tokens=live[0].on_tokens)
            except Exception as error:  # noqa: BLE001 — handed to each waiting request
                for job in live:
                    job.future.set_exception(error)
            else:
                start = 0
                for job in live:
                    job.future.set_result(outputs[start:start + len(job.prompts)])
                    start += len(job.prompts)
            finally:
                self.running = 0

