"""A served tiny chat model: an in-process client, and a live uvicorn server for the official openai client."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi.testclient import TestClient
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.serve.app import create_app
from lmforge.serve.served import ServedModel, ServeOptions

NAME = "tiny"


def served(folder) -> ServedModel:
    return ServedModel(NAME, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder),
                       default_max_tokens=8, context_length=256)


@pytest.fixture(scope="module")
def client(tiny_chat_llama):
    with TestClient(create_app(served(tiny_chat_llama), ServeOptions(max_body_bytes=20_000))) as test_client:
        yield test_client


@contextmanager
def running(app):
    """The base URL of `app` served by uvicorn on a free local port, while the block runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def live_server(tiny_chat_llama):
    """(base URL, API key) of a real server on a free local port."""
    with running(create_app(served(tiny_chat_llama), ServeOptions(api_key="sekret"))) as url:
        yield f"{url}/v1", "sekret"
