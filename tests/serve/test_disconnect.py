"""A client that leaves, or a request out of time, frees its rows: decoding stops within a step or two."""

from __future__ import annotations

import time

import httpx
import pytest

from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions
from tests.serve.conftest import NAME, running, served


@pytest.fixture(scope="module")
def slow_server(tiny_chat_llama):
    """A server whose model takes 20 ms a forward pass; yields (URL, list of forward-pass times)."""
    model = served(tiny_chat_llama)
    passes: list[float] = []

    def slow(module, args, kwargs, output):
        passes.append(time.perf_counter())
        time.sleep(0.02)
    model.model.register_forward_hook(slow, with_kwargs=True)
    with running(create_app(model, ServeOptions(request_timeout_s=0.5))) as url:
        yield url, passes


def idle_after(url: str, seconds: float = 5.0) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if httpx.get(f"{url}/health").json()["running"] == 0:
            return True
        time.sleep(0.05)
    return False


LONG = {"model": NAME, "prompt": "hello", "max_tokens": 200, "lmforge": {"min_new_tokens": 200}}


def test_a_stream_closed_by_its_client_stops_decoding(slow_server):
    url, passes = slow_server
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{url}/v1/completions",
                                                           json=LONG | {"stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # the first piece came: leave
    assert idle_after(url)
    left_at = len(passes)
    time.sleep(0.2)
    assert len(passes) == left_at < 100  # no more steps for the departed client


def test_a_request_out_of_time_gets_504_and_frees_its_rows(slow_server):
    url, passes = slow_server
    started = len(passes)
    response = httpx.post(f"{url}/v1/completions", json=LONG, timeout=10)
    assert response.status_code == 504 and "no answer within 0.5 s" in response.json()["error"]["message"]
    assert idle_after(url)
    assert len(passes) - started < 100


def test_a_stream_out_of_time_ends_with_an_error_event_and_frees_its_row(slow_server):
    url, passes = slow_server
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{url}/v1/completions",
                                                           json=LONG | {"stream": True}) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert "no answer within 0.5 s" in events[-1]
    assert idle_after(url)
