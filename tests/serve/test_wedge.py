"""No request can wedge the server: a constraint that compiles for long is stopped at the server's limit while
other clients are answered, /health tells a stalled server from a busy one, SIGTERM stops a server mid-compile,
the API description needs the key and a taken port is refused before the model loads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from lmforge.cli import main
from lmforge.serve.app import create_app
from lmforge.serve.limits import RequestLimits
from lmforge.serve.served import ServeOptions
from tests.serve.conftest import NAME, running, served

CHAT = "/v1/chat/completions"
OK_CHAT = {"model": NAME, "messages": [{"role": "user", "content": "red dog"}], "max_tokens": 4}
#: few states before compiling, but a determinised automaton of 2^23 states: compiles for minutes
SLOW_REGEX = "(a|b)*a(a|b){22}"


def test_a_slow_compile_is_stopped_at_the_limit_while_other_clients_are_answered(tiny_chat_llama):
    options = ServeOptions(limits=RequestLimits(max_compile_seconds=3))
    with running(create_app(served(tiny_chat_llama), options)) as url, httpx.Client(base_url=url, timeout=60) as http:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(http.post, CHAT, json=OK_CHAT | {"lmforge": {"regex": SLOW_REGEX}})
            time.sleep(0.5)
            answered = [http.post(CHAT, json=OK_CHAT) for _ in range(5)]  # while it compiles
            others_done = time.monotonic() - started
            refused = slow.result(60)
        assert all(r.status_code == 200 for r in answered)
        assert others_done < 3, others_done
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]["message"]
        assert "lmforge.regex" in message and "--max-compile-seconds" in message, message
        assert http.get("/health").json()["status"] == "ok"


def test_health_reports_a_server_that_makes_no_progress(tiny_chat_llama):
    app = create_app(served(tiny_chat_llama), ServeOptions(stall_after_s=0.5))
    scheduler = app.state.scheduler
    release = threading.Event()
    original = scheduler.batch.step

    def wedged_step():  # a decoding step that hangs until released
        if scheduler.batch.rows:
            release.wait(30)
        return original()
    scheduler.batch.step = wedged_step
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, CHAT, json=OK_CHAT)
        deadline = time.monotonic() + 20
        while (health := client.get("/health")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health.status_code == 503 and health.json()["status"] == "stalled", health.text
        release.set()
        assert pending.result(30).status_code == 200
        assert client.get("/health").json()["status"] == "ok"


def test_the_api_description_needs_the_key_and_no_page_loads_from_a_cdn(tiny_chat_llama):
    with TestClient(create_app(served(tiny_chat_llama), ServeOptions(api_key="k"))) as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers={"authorization": "Bearer k"}).status_code == 200
        for page in ("/docs", "/redoc"):
            assert client.get(page, headers={"authorization": "Bearer k"}).status_code == 404
        assert "cdn" not in client.get("/").text.lower()


def test_a_taken_port_is_refused_before_the_model_loads(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code = main(["serve", "no-such-model-folder", "--port", str(port)])
        err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "already in use" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 5


def test_sigterm_stops_a_server_in_the_middle_of_a_compile(tiny_chat_llama, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "lmforge.cli", "serve", str(tiny_chat_llama), "--port", str(port),
                               "--served-model-name", NAME, "--max-compile-seconds", "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        stuck = threading.Thread(target=lambda: _ignore(lambda: httpx.post(
            url + CHAT, json=OK_CHAT | {"lmforge": {"regex": SLOW_REGEX}}, timeout=120)), daemon=True)
        stuck.start()
        time.sleep(2)  # the compile is under way
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        assert time.monotonic() - sent < 15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode is not None


def _ignore(call) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass
