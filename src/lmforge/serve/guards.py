"""ASGI middleware around every request: a body limit on the bytes actually read, and Prometheus counts
and latencies of every answer by endpoint and status."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmforge.serve import responses as R

#: path -> the endpoint label of the metrics (any other path counts as "other", so labels stay few)
ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat", "/v1/models": "models",
             "/v1/classify": "classify", "/v1/ner": "ner", "/v1/qa": "qa", "/v1/score": "score", "/health": "health",
             "/metrics": "metrics", "/": "playground"}


class BodyLimit:
    """Refuse (413) a request body over `max_bytes`, by its Content-Length or, when chunked, by the bytes
    read: the body is read up to the limit before the app sees it, then handed over whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: only a disconnect comes
        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await R.error_response(413, f"request body over {self.max_bytes} bytes")(scope, receive, send)


class Measured:
    """Count every answer (`requests`, by endpoint and status) and time it to its last byte (`latency`);
    an error that escapes the app counts as a 500."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), {"code": 500}
        endpoint = ENDPOINTS.get(scope.get("path", ""), "other")

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, watched)
        finally:
            self._record(endpoint, status["code"], time.perf_counter() - started)

    def _record(self, endpoint: str, status: Any, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint, str(status)).observe(seconds)
