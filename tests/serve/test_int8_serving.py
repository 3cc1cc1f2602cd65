"""`lmforge serve --weights int8`: the server decodes with weight-only int8 linear layers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from lmforge.models.quantize import Int8Linear
from lmforge.recipes.served_model import served_model
from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions


def test_an_int8_server_answers_chat_requests_from_its_continuous_batch(tiny_chat_llama):
    served = served_model(str(tiny_chat_llama), "tiny", weights="int8")
    assert any(isinstance(m, Int8Linear) for m in served.model.modules())
    with TestClient(create_app(served, ServeOptions())) as client:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
        beam = client.post("/v1/chat/completions", json=body | {"lmforge": {"strategy": "beam", "num_beams": 2}})
        assert beam.status_code == 200, beam.text
