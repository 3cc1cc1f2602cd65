"""Malformed requests get a 4xx OpenAI error object naming the field — while a well-formed stream completes."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.serve.conftest import NAME

CHAT = "/chat/completions"
COMPLETE = "/completions"
OK_CHAT = {"model": NAME, "messages": [{"role": "user", "content": "red dog"}]}
OK_COMPLETE = {"model": NAME, "prompt": "red dog"}

# (path, body (dict, or raw text), status, words the message must contain)
BAD = [
    (COMPLETE, '{"model": ', 400, "not valid JSON"),
    (COMPLETE, "[1, 2]", 400, "dictionary"),
    (COMPLETE, {"prompt": "x"}, 400, "model"),
    (COMPLETE, {"model": NAME}, 400, "prompt"),
    (CHAT, {"model": NAME}, 400, "messages"),
    (CHAT, {"model": NAME, "messages": []}, 400, "messages"),
    (COMPLETE, OK_COMPLETE | {"prompt": ""}, 400, "prompt"),
    (COMPLETE, OK_COMPLETE | {"prompt": 5}, 400, "prompt"),
    (COMPLETE, OK_COMPLETE | {"max_tokens": 0}, 400, "max_tokens"),
    (COMPLETE, OK_COMPLETE | {"max_tokens": -1}, 400, "max_tokens"),
    (COMPLETE, OK_COMPLETE | {"max_tokens": 10**6}, 400, "max_tokens"),
    (COMPLETE, OK_COMPLETE | {"max_tokens": "ten"}, 400, "max_tokens"),
    (COMPLETE, OK_COMPLETE | {"temperature": 3}, 400, "temperature"),
    (COMPLETE, OK_COMPLETE | {"temperature": -0.5}, 400, "temperature"),
    (COMPLETE, OK_COMPLETE | {"top_p": 0}, 400, "top_p"),
    (COMPLETE, OK_COMPLETE | {"top_p": 1.5}, 400, "top_p"),
    (COMPLETE, OK_COMPLETE | {"n": 0}, 400, "n"),
    (COMPLETE, OK_COMPLETE | {"n": 100}, 400, "n"),
    (COMPLETE, OK_COMPLETE | {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    (COMPLETE, OK_COMPLETE | {"stop": 5}, 400, "stop"),
    (COMPLETE, OK_COMPLETE | {"foo": 1}, 400, "foo"),
    (COMPLETE, OK_COMPLETE | {"model": "gpt-4"}, 404, "not served here"),
    (CHAT, OK_CHAT | {"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    (CHAT, OK_CHAT | {"messages": [{"role": "user"}]}, 400, "content"),
    (CHAT, OK_CHAT | {"response_format": {"type": "xml"}}, 400, "response_format"),
    (CHAT, OK_CHAT | {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "schema"),
    (CHAT, OK_CHAT | {"lmforge": {"strategy": "magic"}}, 400, "lmforge.strategy"),
    (CHAT, OK_CHAT | {"lmforge": {"num_beams": 2}}, 400, "num_beams"),
    (CHAT, OK_CHAT | {"lmforge": {"unknown": 1}}, 400, "lmforge.unknown"),
    (CHAT, OK_CHAT | {"presence_penalty": 1}, 400, "presence_penalty"),
    (COMPLETE, OK_COMPLETE | {"logprobs": 10}, 400, "logprobs"),
    (COMPLETE, OK_COMPLETE | {"echo": True}, 400, "echo"),
    (COMPLETE, OK_COMPLETE | {"prompt": "red " * 400}, 400, "context"),
    (CHAT, OK_CHAT | {"stream": True, "n": 2}, 400, "stream"),
    (COMPLETE, OK_COMPLETE | {"seed": "abc"}, 400, "seed"),
    (COMPLETE, OK_COMPLETE | {"prompt": "x" * 30_000}, 413, "body"),
    ("/nothing", OK_COMPLETE, 404, "Not Found"),
]


def send(client, path: str, body) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post("/v1" + path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize("path, body, status, words", BAD, ids=[f"{n}" for n in range(len(BAD))])
def test_bad_request_gets_a_clear_4xx(client, path, body, status, words):
    response = send(client, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"]


def test_wrong_method_is_an_error_object(client):
    response = client.get("/v1/completions")
    assert response.status_code == 405 and "Method Not Allowed" in response.json()["error"]["message"]


def test_bad_requests_while_a_stream_runs_and_the_server_keeps_serving(live_server):
    url, key = live_server
    headers = {"authorization": f"Bearer {key}"}
    events: list[str] = []

    def stream() -> None:
        body = OK_CHAT | {"stream": True, "max_tokens": 24}
        with httpx.stream("POST", url + CHAT, json=body, headers=headers, timeout=60) as response:
            events.extend(line for line in response.iter_lines() if line)
    worker = threading.Thread(target=stream)
    worker.start()
    with httpx.Client(base_url=url.removesuffix("/v1"), headers=headers, timeout=60) as client:
        statuses = [send(client, path, body).status_code for path, body, _, _ in BAD if "x" * 30_000 not in str(body)]
        worker.join(60)
        assert all(400 <= s < 500 for s in statuses) and len(statuses) >= 30
        assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["choices"][0]["finish_reason"]
        assert client.get("/health").json()["status"] == "ok"
        assert send(client, COMPLETE, OK_COMPLETE).status_code == 200


def test_health_metrics_and_api_key(client, live_server):
    assert client.get("/health").json() == {"status": "ok", "model": NAME, "waiting": 0, "running": 0,
                                           "seconds_without_progress": 0.0}
    assert send(client, COMPLETE, OK_COMPLETE).status_code == 200
    text = client.get("/metrics").text
    assert "lmforge_queue_depth" in text and 'lmforge_request_latency_seconds_count{endpoint="completions",status="200"}' in text
    url, _ = live_server
    response = httpx.get(url + "/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
