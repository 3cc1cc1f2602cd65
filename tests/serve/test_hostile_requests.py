"""A client cannot turn the server against its host: no request reads a server file or loads a model,
every cost knob is bounded, bodies are limited by the bytes read, broken text is a 400, every answer is
counted — and under 16 live streams plus 100 hostile requests no stream breaks and nothing answers 5xx."""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions
from tests.serve.conftest import NAME, running, served

CHAT = "/v1/chat/completions"
COMPLETE = "/v1/completions"
OK_CHAT = {"model": NAME, "messages": [{"role": "user", "content": "red dog"}], "max_tokens": 4}
OK_COMPLETE = {"model": NAME, "prompt": "red dog", "max_tokens": 4}
SECRET_DIR = "lmforge-secret-area"  # a folder on the "server" no request may touch


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """A server folder holding a JSON schema, a fake model folder and a fake policy folder."""
    folder = tmp_path_factory.mktemp(SECRET_DIR)
    (folder / "schema.json").write_text(json.dumps({"type": "object", "properties": {"pwned": {"type": "string"}}}))
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    return folder


def hostile(secret) -> list[tuple[str, object, int, str]]:
    """(path, body (dict or raw JSON text), status, words the error message holds)."""
    ext = lambda fields, base=OK_CHAT: base | {"lmforge": fields}  # noqa: E731
    missing = str(secret / "no-such")
    return [
        # the server's own files and models
        (CHAT, ext({"json_schema": str(secret / "schema.json")}), 400, "cannot name a file"),
        (CHAT, ext({"json_schema": missing + ".json"}), 400, "cannot name a file"),
        (CHAT, ext({"json_schema": "/etc/passwd"}), 400, "cannot name a file"),
        (CHAT, ext({"json_schema": json.dumps(str(secret / "schema.json"))}), 400, "cannot name a file"),
        (CHAT, ext({"strategy": "speculative", "draft_model": str(secret / "model")}), 400, "lmforge.draft_model"),
        (CHAT, ext({"strategy": "speculative", "draft_model": missing}), 400, "lmforge.draft_model"),
        (CHAT, ext({"strategy": "speculative"}), 400, "--draft-model"),
        (CHAT, ext({"strategy": "auto", "policy": str(secret)}), 400, "lmforge.policy"),
        (CHAT, ext({"strategy": "auto"}), 400, "--policy"),
        (CHAT, ext({"strategy": "contrastive", "image_weight": 1.0, "image_scorer": str(secret / "model")}), 400,
         "lmforge.image_scorer"),
        (CHAT, ext({"strategy": "contrastive", "image_weight": 1.0, "image_gate": str(secret / "schema.json")}), 400,
         "lmforge.image_gate"),
        (CHAT, ext({"strategy": "contrastive", "image_weight": 1.0}), 400, "lmforge.image_weight"),
        (CHAT, ext({"weights": "int8"}), 400, "lmforge.weights"),
        (CHAT, ext({"engine": "llama.cpp"}), 400, "lmforge.engine"),
        # cost knobs
        (CHAT, ext({"strategy": "beam", "num_beams": 64}), 400, "limit of 8"),
        (CHAT, ext({"strategy": "beam", "num_beams": 8, "num_return_sequences": 8}), 200, ""),
        (CHAT, ext({"strategy": "sample", "num_return_sequences": 9}), 400, "--max-n"),
        (CHAT, OK_CHAT | {"n": 16}, 400, "--max-n"),
        (CHAT, OK_CHAT | {"max_tokens": 2000}, 400, "--max-tokens"),
        (CHAT, OK_CHAT | {"max_completion_tokens": 2000}, 400, "max_completion_tokens"),
        (COMPLETE, OK_COMPLETE | {"prompt": ["red"] * 17}, 400, "--max-prompts"),
        (CHAT, ext({"compile": True, "cache": "static"}), 400, "--allow-compile"),
        (CHAT, ext({"cache": "static"}), 400, "--allow-compile"),
        (CHAT, ext({"bad_words": ["w"] * 300}), 400, "--max-rule-items"),
        (CHAT, ext({"choices": ["c"] * 300}), 400, "--max-rule-items"),
        (CHAT, ext({"logit_bias": {str(i): 1 for i in range(300)}}), 400, "--max-rule-items"),
        (CHAT, ext({"logit_bias": {"99999999": 5}}), 400, "not in the vocabulary"),
        (CHAT, ext({"logit_bias": {"-1": 5}}), 400, "not in the vocabulary"),
        (CHAT, ext({"regex": "a" * 10_000}), 400, "--max-pattern-chars"),
        (CHAT, ext({"json_schema": {"type": "object", "description": "x" * 10_000}}), 400, "--max-pattern-chars"),
        (CHAT, ext({"explain": 50}), 400, "--max-explain"),
        (CHAT, ext({"strategy": "speculative", "num_draft_tokens": 500}), 400, "draft"),
        (CHAT, ext({"min_new_tokens": 5000}), 400, "--max-tokens"),
        # broken text, unsupported features
        (COMPLETE, '{"model": "tiny", "prompt": "hi \\ud800"}', 400, "not valid Unicode"),
        (CHAT, '{"model": "tiny", "messages": [{"role": "user", "content": "\\udfff x"}]}', 400, "messages.0.content"),
        (CHAT, '{"model": "tiny", "messages": [{"role": "user", "content": "ok"}], "stop": ["\\ud83d"]}', 400,
         "not valid Unicode"),
        (CHAT, OK_CHAT | {"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
        (CHAT, OK_CHAT | {"tool_choice": "auto"}, 400, "tool_choice"),
        (CHAT, OK_CHAT | {"max_tokens": 3, "max_completion_tokens": 4}, 400, "max_completion_tokens"),
        *non_finite(), *costly_constraints(),
        (CHAT, ext({"regex": "(a"}), 400, "not a usable regular expression"),
        (CHAT, ext({"json_schema": {"type": "nonsense"}}), 400, "not a usable JSON schema"),
        (CHAT, OK_CHAT | {"seed": 2**70}, 400, "seed"),
        (CHAT, ext({"seed": -1}), 400, "seed"),
    ]


def raw(body: dict, **literals: str) -> str:
    """`body` as JSON text with placeholders replaced by JSON literals Python's json writes no other way
    (NaN, Infinity, -Infinity)."""
    text = json.dumps(body)
    for name, literal in literals.items():
        text = text.replace(f'"{name}"', literal)
    return text


def non_finite() -> list[tuple[str, object, int, str]]:
    """Every float a request carries, sent as NaN / ±Infinity: a 400 naming it, never a 500 or NaN scores."""
    cases = []
    for literal in ("NaN", "Infinity", "-Infinity"):
        for field in ("temperature", "top_p"):
            cases.append((CHAT, raw(OK_CHAT | {field: "X"}, X=literal), 400, field))
        for field, extra in (("temperature", {"strategy": "sample"}), ("top_p", {"strategy": "sample"}),
                             ("min_p", {"strategy": "sample"}), ("typical_p", {"strategy": "sample"}),
                             ("repetition_penalty", {}), ("length_penalty", {"strategy": "beam"}),
                             ("penalty_alpha", {"strategy": "contrastive"})):
            cases.append((CHAT, raw(OK_CHAT | {"lmforge": extra | {field: "X"}}, X=literal), 400, "finite number"))
        cases.append((CHAT, raw(OK_CHAT | {"temperature": 1, "lmforge": {"logit_bias": {"5": "X"}}}, X=literal), 400,
                      "lmforge.logit_bias.5"))
        cases.append((COMPLETE, raw(OK_COMPLETE | {"lmforge": {"logit_bias": {"5": "X"}}}, X=literal), 400,
                      "finite number"))
    return cases


def costly_constraints() -> list[tuple[str, object, int, str]]:
    """Constraints that would compile for minutes: refused by their estimated states before compiling."""
    ext = lambda fields: OK_CHAT | {"lmforge": fields}  # noqa: E731
    huge_string = {"type": "string", "maxLength": 100_000}
    return [
        (CHAT, ext({"regex": "(a{1,999}){1,999}"}), 400, "--max-automaton-states"),
        (CHAT, ext({"regex": "[a-z]{0,100000}"}), 400, "--max-automaton-states"),
        (CHAT, ext({"json_schema": huge_string}), 400, "--max-automaton-states"),
        (CHAT, OK_CHAT | {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": huge_string}}},
         400, "response_format"),
        (CHAT, ext({"json_schema": {"type": "array", "items": {"type": "string", "maxLength": 999}, "maxItems": 999}}),
         400, "automaton states"),
        (COMPLETE, OK_COMPLETE | {"lmforge": {"regex": "((ab){1,500}c){1,500}"}}, 400, "--max-automaton-states"),
    ]


def post(client, path: str, body) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=content, headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def client(tiny_chat_llama):
    with TestClient(create_app(served(tiny_chat_llama), ServeOptions(max_body_bytes=20_000)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


class FileWatch:
    """Records every file the process opens under the secret folder while `armed` (sys.addaudithook)."""

    def __init__(self) -> None:
        self.armed, self.opened = False, []
        sys.addaudithook(self._hear)

    def _hear(self, event: str, args: tuple) -> None:
        if self.armed and event in ("open", "os.listdir", "os.scandir") and args and SECRET_DIR in str(args[0]):
            self.opened.append(str(args[0]))


WATCH = FileWatch()


def test_every_hostile_request_is_refused_by_name_and_reads_no_server_file(client, secret):
    cases = hostile(secret)
    WATCH.armed, WATCH.opened = True, []
    try:
        answers = [(post(client, path, body), status, words) for path, body, status, words in cases]
    finally:
        WATCH.armed = False
    for (response, status, words), case in zip(answers, cases, strict=True):
        assert response.status_code == status, (case, response.text)
        if status != 200:
            message = response.json()["error"]["message"]
            assert words in message, (case, response.text)
            assert "path" not in message and ".json file" not in message, (case, message)  # request fields only
    assert WATCH.opened == []
    print(f"{len(cases)} hostile requests: {sum(a[0].status_code == a[1] for a in answers)} answered as expected")


def test_a_missing_and_an_existing_server_path_get_the_same_answer(client, secret):
    def message(path: str) -> str:
        body = OK_CHAT | {"lmforge": {"strategy": "speculative", "draft_model": path}}
        return post(client, CHAT, body).json()["error"]["message"]
    assert message(str(secret / "model")).replace(str(secret / "model"), "") == \
        message(str(secret / "gone")).replace(str(secret / "gone"), "")


def test_a_chunked_body_over_the_limit_is_refused_by_the_bytes_read(client):
    body = json.dumps(OK_COMPLETE | {"prompt": "red " * 20_000}).encode()
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))  # no Content-Length: sent chunked
    response = client.post(COMPLETE, content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over 20000 bytes" in response.json()["error"]["message"]
    small = json.dumps(OK_COMPLETE).encode()
    response = client.post(COMPLETE, content=iter([small[:10], small[10:]]), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_max_completion_tokens_is_the_newer_name_of_max_tokens(client):
    answer = post(client, CHAT, OK_CHAT | {"max_tokens": None, "max_completion_tokens": 2,
                                           "lmforge": {"min_new_tokens": 2}}).json()
    assert answer["usage"]["completion_tokens"] == 2 and answer["choices"][0]["finish_reason"] == "length"


def test_metrics_count_every_status_with_latencies(client):
    post(client, COMPLETE, OK_COMPLETE)
    post(client, COMPLETE, OK_COMPLETE | {"n": 0})
    post(client, COMPLETE, OK_COMPLETE | {"model": "other"})
    client.post(COMPLETE, content=b"x" * 30_000)
    client.get("/nothing")
    text = client.get("/metrics").text
    for status, endpoint in (("200", "completions"), ("400", "completions"), ("404", "completions"),
                             ("413", "completions"), ("404", "other")):
        assert f'lmforge_requests_total{{endpoint="{endpoint}",status="{status}"}}' in text, (status, text)
        assert f'lmforge_request_latency_seconds_count{{endpoint="{endpoint}",status="{status}"}}' in text


def test_metrics_need_the_api_key_unless_made_public(tiny_chat_llama):
    model = served(tiny_chat_llama)
    with TestClient(create_app(model, ServeOptions(api_key="k"))) as keyed:
        assert keyed.get("/health").status_code == 200
        assert keyed.get("/metrics").status_code == 401
        assert keyed.get("/metrics", headers={"authorization": "Bearer k"}).status_code == 200
    with TestClient(create_app(model, ServeOptions(api_key="k", public_metrics=True))) as public:
        assert public.get("/metrics").status_code == 200
        assert public.get("/v1/models").status_code == 401


def test_16_streams_and_100_hostile_requests_at_once(tiny_chat_llama, secret):
    cases = [case for case in hostile(secret) if case[2] != 200]
    attacks = [cases[i % len(cases)] for i in range(100)]
    with running(create_app(served(tiny_chat_llama), ServeOptions(max_queue=256, max_batch=16))) as url:
        with httpx.Client(base_url=url, timeout=120) as http:
            prompts = [f"red dog {i % 4}" for i in range(16)]
            expected = {p: http.post(COMPLETE, json=OK_COMPLETE | {"prompt": p, "max_tokens": 24}).json()
                        ["choices"][0]["text"] for p in set(prompts)}
        started = threading.Barrier(17)

        def stream(prompt: str) -> tuple[str, list[str]]:
            started.wait(30)
            body = OK_COMPLETE | {"prompt": prompt, "max_tokens": 24, "stream": True}
            with httpx.stream("POST", url + COMPLETE, json=body, timeout=120) as response:
                return prompt, [line for line in response.iter_lines() if line]

        def attack(case) -> int:
            path, body, _, _ = case
            content = body if isinstance(body, str) else json.dumps(body)
            return httpx.post(url + path, content=content, headers={"content-type": "application/json"},
                              timeout=120).status_code
        WATCH.armed, WATCH.opened = True, []
        try:
            with ThreadPoolExecutor(32) as pool:
                streams = [pool.submit(stream, p) for p in prompts]
                started.wait(30)
                statuses = list(pool.map(attack, attacks))
                results = [s.result(120) for s in streams]
        finally:
            WATCH.armed = False
    assert sorted(set(statuses)) == [400] and len(statuses) == 100
    for prompt, events in results:
        assert events[-1] == "data: [DONE]"
        text = "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-1])
        assert text == expected[prompt]
    assert WATCH.opened == []
    print(f"16 streams intact, 100 hostile requests: statuses {sorted(set(statuses))}")


def test_what_held_in_the_earlier_probe_still_holds(tiny_chat_llama, secret):
    """$ref to files and URLs refused, a gzip bomb refused by its size, 100k-deep JSON a 400, 40 clients that
    send their headers slowly starve nobody, 64 requests at once are all answered."""
    ext = lambda fields: OK_CHAT | {"lmforge": fields}  # noqa: E731
    refs = [{"$ref": f"file://{secret / 'schema.json'}"}, {"$ref": "http://127.0.0.1:9/schema.json"},
            {"type": "object", "properties": {"a": {"$ref": f"file://{secret / 'schema.json'}#/properties"}}}]
    with running(create_app(served(tiny_chat_llama), ServeOptions(max_queue=128, max_batch=16,
                                                                  max_body_bytes=210_000))) as url:
        with httpx.Client(base_url=url, timeout=120) as http:
            for schema in refs:
                answer = http.post(CHAT, json=ext({"json_schema": schema}))
                assert answer.status_code == 400, answer.text
            bomb = gzip.compress(b"\0" * 300_000_000)  # 300 MB of zeros: ~300 kB on the wire
            answer = http.post(COMPLETE, content=bomb, headers={"content-type": "application/json",
                                                                 "content-encoding": "gzip"})
            assert answer.status_code == 413, answer.text
            deep = '{"model": "tiny", "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
            answer = http.post(COMPLETE, content=deep, headers={"content-type": "application/json"})
            assert answer.status_code == 400, answer.text
            slow = []
            for _ in range(40):  # each sends half a request line and waits
                sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
                sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)
            try:
                started = time.monotonic()
                assert http.post(COMPLETE, json=OK_COMPLETE).status_code == 200
                assert time.monotonic() - started < 10
                with ThreadPoolExecutor(64) as pool:
                    statuses = list(pool.map(lambda i: http.post(COMPLETE, json=OK_COMPLETE | {
                        "prompt": f"red dog {i}"}).status_code, range(64)))
            finally:
                for sock in slow:
                    sock.close()
            assert statuses == [200] * 64
            assert http.get("/health").json()["status"] == "ok"
    print(f"held: {len(refs)} $ref schemas refused, gzip bomb 413, 100k-deep JSON 400, 40 slow clients, 64 at once")
