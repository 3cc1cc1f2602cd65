"""The FastAPI app: OpenAI-compatible completions and chat, /v1/models, /health and Prometheus /metrics.

Every request error is an OpenAI error object with a 4xx status that names the field; the model runs
in the scheduler's worker thread, so the event loop keeps answering while it decodes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode.stream import TextDeltas
from lmforge.errors import LmforgeError
from lmforge.serve import responses as R
from lmforge.serve.scheduler import Job, QueueFull, Scheduler
from lmforge.serve.schemas import ChatRequest, CompletionRequest, RequestBase
from lmforge.serve.task_routes import ServedTask, add_task_routes


@dataclass
class ServedModel:
    """What the server decodes with: the model, its tokenizer and its limits."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    default_max_tokens: int = 256
    context_length: int = 2048
    precision: str = "fp32"


@dataclass
class ServeOptions:
    api_key: str | None = None
    max_queue: int = 64
    max_batch: int = 8
    request_timeout_s: float = 300.0
    max_body_bytes: int = 1_000_000


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def _metrics(registry: CollectorRegistry, scheduler: Scheduler | None) -> dict:
    queue = Gauge("lmforge_queue_depth", "Requests waiting for the model", registry=registry)
    queue.set_function(lambda: scheduler.waiting if scheduler is not None else 0)
    return {
        "requests": Counter("lmforge_requests", "Requests answered", ["endpoint", "status"], registry=registry),
        "tokens": Counter("lmforge_generated_tokens", "Tokens generated", registry=registry),
        "latency": Histogram("lmforge_request_latency_seconds", "Time to the full answer", ["endpoint"],
                             registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)),
        "speed": Gauge("lmforge_tokens_per_second", "Generated tokens per second of the last request", registry=registry),
    }


def create_app(served: ServedModel | ServedTask, options: ServeOptions | None = None) -> FastAPI:
    """The app serving a generating model (OpenAI endpoints; its scheduler thread starts now and stops at
    the app's shutdown) or a run of another task (its /v1/classify, /v1/ner or /v1/qa endpoint)."""
    options = options or ServeOptions()
    task = served if isinstance(served, ServedTask) else None
    scheduler = Scheduler(served.model, served.tokenizer, served.precision, options.max_queue, options.max_batch) \
        if task is None else None
    registry = CollectorRegistry()
    metrics = _metrics(registry, scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if scheduler is not None:
            await asyncio.to_thread(scheduler.close)  # in-flight and queued requests finish first

    app = FastAPI(title="lmforge", summary="OpenAI-compatible API over lmforge's decoding engine", lifespan=lifespan)
    app.state.scheduler, app.state.served_name = scheduler, served.name
    tokenizer = served.tokenizer if task is None else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body_bytes:
            return R.error_response(413, f"request body over {options.max_body_bytes} bytes")
        if options.api_key and request.url.path.startswith("/v1"):
            if request.headers.get("authorization") != f"Bearer {options.api_key}":
                return R.error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                        kind="authentication_error", code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        if first.get("type") == "json_invalid":
            return R.error_response(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip())
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request").replace("Value error, ", "")
        return R.error_response(400, f"{param}: {message}" if param else message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return R.error_response(error.status_code, f"{request.method} {request.url.path}: {error.detail}")

    @app.exception_handler(BadRequest)
    async def bad(request: Request, error: BadRequest) -> JSONResponse:
        return R.error_response(error.status, str(error), error.param, code=error.code)

    @app.get("/health")
    async def health() -> dict:
        if scheduler is None:
            return {"status": "ok", "model": served.name, "task": served.task}
        return {"status": "ok", "model": served.name, "waiting": scheduler.waiting, "running": scheduler.running}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0, "owned_by": "lmforge"}
                                           | ({"task": task.task} if task is not None else {})]}

    if task is not None:
        add_task_routes(app, task, BadRequest)
        return app

    def check_model(body: RequestBase) -> None:
        if body.model != served.name:
            raise BadRequest(f"model {body.model!r} is not served here; this server serves {served.name!r}", "model",
                             404, "model_not_found")

    def params_of(body: RequestBase, **kwargs):
        try:
            return body.decode_params(**kwargs)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequest(f"lmforge.{where}: {first['msg']}".replace("Value error, ", "") if where else
                             first["msg"].replace("Value error, ", ""), "lmforge") from None

    def check_length(ids: list[int], param: str) -> list[int]:
        if len(ids) >= served.context_length:
            raise BadRequest(f"{param}: {len(ids)} tokens, more than the model's context of {served.context_length}",
                             param, code="context_length_exceeded")
        return ids

    async def run(job: Job, endpoint: str) -> list:
        started = time.perf_counter()
        try:
            future = scheduler.submit(job)
        except QueueFull as full:
            raise BadRequest(str(full), status=429, code="rate_limit_exceeded") from None
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), options.request_timeout_s)
        except TimeoutError:
            raise BadRequest(f"no answer within {options.request_timeout_s:.0f} s", status=504, code="timeout") from None
        except (LmforgeError, ValueError) as error:
            raise BadRequest(str(error)) from None
        seconds = time.perf_counter() - started
        produced = sum(len(c.tokens) for candidates in outputs for c in candidates)
        metrics["tokens"].inc(produced)
        metrics["latency"].labels(endpoint).observe(seconds)
        metrics["speed"].set(produced / seconds if seconds else 0.0)
        return outputs

    def stream(job: Job, request_id: str, chunk) -> StreamingResponse:
        """Server-sent events: one chunk per text delta, a last chunk with the finish reason, then [DONE]."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        deltas = TextDeltas(tokenizer, job.stop_strings)

        def hand_over(rows: list[int], tokens: list[int]) -> None:
            for token in tokens:
                if delta := deltas.push(token):
                    loop.call_soon_threadsafe(pieces.put_nowait, delta)
        job.on_tokens = hand_over
        try:
            future = scheduler.submit(job)
        except QueueFull as full:
            raise BadRequest(str(full), status=429, code="rate_limit_exceeded") from None
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))

        async def events() -> AsyncIterator[str]:
            while (piece := await pieces.get()) is not None:
                yield f"data: {json.dumps(chunk(piece, None))}\n\n"
            if future.exception() is not None:
                error = {"error": {"message": str(future.exception()), "type": "server_error", "param": None, "code": None}}
                yield f"data: {json.dumps(error)}\n\n"
            else:
                candidate = future.result()[0][0]
                _, reason = R.choice_text(tokenizer, candidate, job.stop_strings, job.max_new_tokens)
                metrics["tokens"].inc(len(candidate.tokens))
                yield f"data: {json.dumps(chunk('', reason))}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        check_model(body)
        params = params_of(body, explain=body.logprobs or 0)
        prompts = [check_length(tokenizer(p)["input_ids"], "prompt") for p in body.prompts()]
        max_tokens = body.max_tokens or served.default_max_tokens
        job = Job(prompts, params, max_tokens, body.stop_strings())
        request_id = R.new_id("cmpl")
        if body.stream:
            if len(prompts) > 1 or body.n > 1:
                raise BadRequest("stream: one prompt and n = 1 per streamed request", "stream")
            return stream(job, request_id, lambda text, reason: R.envelope(
                "text_completion", served.name, [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}],
                request_id))
        outputs = await run(job, "completions")
        choices = []
        for candidates in outputs:
            for candidate in candidates:
                text, reason = R.choice_text(tokenizer, candidate, job.stop_strings, max_tokens)
                logprobs = R.completion_logprobs(tokenizer, candidate) if body.logprobs is not None else None
                choices.append({"index": len(choices), "text": text, "logprobs": logprobs, "finish_reason": reason})
        metrics["requests"].labels("completions", "200").inc()
        completion_tokens = sum(len(c.tokens) for candidates in outputs for c in candidates)
        return R.envelope("text_completion", served.name, choices, request_id,
                          usage=R.usage(sum(len(p) for p in prompts), completion_tokens))

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        check_model(body)
        if not getattr(tokenizer, "chat_template", None):
            raise BadRequest(f"{served.name} has no chat template; use /v1/completions", "messages")
        try:
            schema = body.response_format.schema_text() if body.response_format else None
        except ValueError as error:
            raise BadRequest(str(error), "response_format") from None
        explain = (body.top_logprobs or 1) if body.logprobs else 0
        params = params_of(body, json_schema=schema, explain=explain)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in body.messages]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        prompt = check_length(list(prompt), "messages")
        max_tokens = body.max_tokens or served.default_max_tokens
        job = Job([prompt], params, max_tokens, body.stop_strings())
        request_id = R.new_id("chatcmpl")
        if body.stream:
            if body.n > 1:
                raise BadRequest("stream: n = 1 per streamed request", "stream")
            return stream(job, request_id, lambda text, reason: R.envelope(
                "chat.completion.chunk", served.name,
                [{"index": 0, "delta": {"role": "assistant", "content": text} if text else {}, "logprobs": None,
                  "finish_reason": reason}], request_id))
        outputs = await run(job, "chat")
        choices = []
        for candidate in outputs[0]:
            text, reason = R.choice_text(tokenizer, candidate, job.stop_strings, max_tokens)
            logprobs = {"content": R.token_logprobs(tokenizer, candidate)} if body.logprobs else None
            choices.append({"index": len(choices), "message": {"role": "assistant", "content": text},
                            "logprobs": logprobs, "finish_reason": reason})
        metrics["requests"].labels("chat", "200").inc()
        return R.envelope("chat.completion", served.name, choices, request_id,
                          usage=R.usage(len(prompt), sum(len(c.tokens) for c in outputs[0])))

    return app
