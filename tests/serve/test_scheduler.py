"""The scheduler: greedy/sampled requests share the continuous batch, other strategies run in waves once it
drains, a full queue refuses work, results match one by one."""

from __future__ import annotations

import threading
import time

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.serve.scheduler import Job, QueueFull, Scheduler


@pytest.fixture(scope="module")
def llama(tiny_chat_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval(), AutoTokenizer.from_pretrained(tiny_chat_llama)


def blocking_job(release: threading.Event) -> Job:
    """A streaming job whose first token waits for `release` (so the worker is busy meanwhile)."""
    return Job([[5, 6, 7]], DecodeParams(), 2, [], on_tokens=lambda rows, tokens: release.wait(10))


def test_jobs_share_the_batch_waves_wait_for_it_and_results_match_single_runs(llama):
    model, tokenizer = llama
    scheduler = Scheduler(model, tokenizer, max_queue=8, max_batch=8)
    release = threading.Event()
    scheduler.submit(blocking_job(release))
    prompts = [[5, 9, 12], [7], [30, 31, 32, 33]]
    futures = [scheduler.submit(Job([p], DecodeParams(), 6, [])) for p in prompts]
    different = scheduler.submit(Job([[8, 9]], DecodeParams(strategy="beam", num_beams=2), 6, []))
    release.set()
    results = [f.result(30)[0][0].tokens for f in futures]
    different.result(30)
    scheduler.close()
    assert scheduler.waves == 1  # the beam job; the others decoded in the continuous batch
    assert scheduler.batch.steps <= 2 + 6 + 1  # the blocker's 2 steps, then the greedy jobs together
    assert results == [generate(model, tokenizer, DecodeRequest([p], DecodeParams(), 6))[0][0].tokens for p in prompts]


def test_a_full_queue_refuses_at_once(llama):
    model, tokenizer = llama
    scheduler = Scheduler(model, tokenizer, max_queue=1)
    release = threading.Event()
    first = scheduler.submit(blocking_job(release))
    while scheduler.running == 0:  # the worker has taken the first job
        pass
    scheduler.submit(Job([[5]], DecodeParams(), 2, []))
    with pytest.raises(QueueFull, match="queue is full"):
        scheduler.submit(Job([[6]], DecodeParams(), 2, []))
    release.set()
    first.result(30)
    scheduler.close()


def test_a_job_abandoned_while_waiting_never_runs(llama):
    model, tokenizer = llama
    scheduler = Scheduler(model, tokenizer)
    release = threading.Event()
    scheduler.submit(blocking_job(release))
    gone = Job([[5, 6]], DecodeParams(), 4, [])
    scheduler.submit(gone)
    gone.abandon()
    release.set()
    scheduler.close()
    assert gone.future.cancelled()


def test_a_beam_request_runs_between_steps_of_a_long_stream_after_a_bounded_wait(llama):
    model, tokenizer = llama
    scheduler = Scheduler(model, tokenizer, wave_wait_s=0.2)
    long_params = DecodeParams(min_new_tokens=150)
    long = scheduler.submit(Job([[5, 6, 7]], long_params, 150, [], on_tokens=lambda rows, tokens: time.sleep(0.02)))
    while scheduler.running == 0:
        time.sleep(0.01)
    beam_params = DecodeParams(strategy="beam", num_beams=2)
    beam = scheduler.submit(Job([[8, 9]], beam_params, 6, []))
    beam_tokens = beam.result(30)[0][0].tokens
    assert not long.done()  # the wave did not wait for the stream's 150 steps (≥ 3 s)
    long_tokens = long.result(60)[0][0].tokens
    scheduler.close()
    assert scheduler.waves == 1
    assert beam_tokens == generate(model, tokenizer, DecodeRequest([[8, 9]], beam_params, 6))[0][0].tokens
    assert long_tokens == generate(model, tokenizer, DecodeRequest([[5, 6, 7]], long_params,
                                                                   150))[0][0].tokens  # the pause left it intact
