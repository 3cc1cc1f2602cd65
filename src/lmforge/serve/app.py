"""The FastAPI app: the playground at /, /v1/models, /health, Prometheus /metrics, errors as OpenAI error
objects, and the routes of what is served (generation_routes.py: completions and chat; task_routes.py:
classify, ner, qa).

Every request error is an OpenAI error object with a 4xx status that names the field; the model runs
in the scheduler's worker thread, so the event loop keeps answering while it decodes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.decode.light_batch import LightBatch
from lmforge.decode.llama_cpp_runtime import MAX_SEQUENCES
from lmforge.serve import responses as R
from lmforge.serve.bad_request import BadRequest
from lmforge.serve.embedding_routes import add_embedding_route
from lmforge.serve.generation_routes import add_generation_routes
from lmforge.serve.guards import BodyLimit, Measured
from lmforge.serve.playground import playground_page
from lmforge.serve.scheduler import Scheduler
from lmforge.serve.served import ServedModel, ServeOptions
from lmforge.serve.task_routes import TASK_ENDPOINTS, ServedTask, add_task_routes


def _metrics(registry: CollectorRegistry, scheduler: Scheduler | None) -> dict:
    queue = Gauge("lmforge_queue_depth", "Requests waiting for the model", registry=registry)
    queue.set_function(lambda: scheduler.waiting if scheduler is not None else 0)
    return {
        "requests": Counter("lmforge_requests", "Requests answered, by endpoint and HTTP status", ["endpoint", "status"],
                            registry=registry),
        "tokens": Counter("lmforge_generated_tokens", "Tokens generated", registry=registry),
        "latency": Histogram("lmforge_request_latency_seconds", "Time to the full answer (streams: to the last event)",
                             ["endpoint", "status"], registry=registry,
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)),
        "speed": Gauge("lmforge_tokens_per_second", "Generated tokens per second of the last request", registry=registry),
    }


def create_app(served: ServedModel | ServedTask, options: ServeOptions | None = None) -> FastAPI:
    """The app serving a generating model (OpenAI endpoints; its scheduler thread starts now and stops at
    the app's shutdown) or a run of another task (its /v1/classify, /v1/ner or /v1/qa endpoint)."""
    options = options or ServeOptions()
    task = served if isinstance(served, ServedTask) else None
    cells = max(served.context_length, 1024 + options.limits.max_tokens) if task is None else 0  # as llama-server's
    if task is None and served.runtime is not None and served.model is not None:  # one KV cache for all requests
        rows = options.max_batch * max(options.limits.max_beams, options.limits.max_n)  # requests wait for room
        served.runtime.reserve(cells=cells, sequences=min(2 * rows, MAX_SEQUENCES - 1))
        served.runtime.shared_only = True  # requests join and leave one shared cache: no remaking it per request
    scheduler: Scheduler | None = None
    if task is None and served.model is None:  # llama.cpp alone: torch loaded for the first request it decodes
        batch = LightBatch(served.runtime, served.tokenizer, served.stop_ids, served.decoding["weights"],
                           rows=options.max_batch, cells=cells)
        scheduler = Scheduler(None, served.tokenizer, served.precision, options.max_queue, options.max_batch,
                              wave_wait_s=options.wave_wait_s, batch=batch, load_model=served.load_torch)
    elif task is None:
        scheduler = Scheduler(served.model, served.tokenizer, served.precision, options.max_queue, options.max_batch,
                              served.experts, options.wave_wait_s, served.runtime, mixed_adapters=bool(served.adapters))
    registry = CollectorRegistry()
    metrics = _metrics(registry, scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if scheduler is not None:
            await asyncio.to_thread(scheduler.close)  # in-flight and queued requests finish first

    # no /docs or /redoc: Swagger UI and ReDoc load their scripts from a CDN, which an offline server cannot
    app = FastAPI(title="lmforge", summary="OpenAI-compatible API over lmforge's decoding engine", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.scheduler, app.state.served_name = scheduler, served.name
    keyed = ("/v1", "/openapi.json") + (() if options.public_metrics else ("/metrics",))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if options.api_key and request.url.path.startswith(keyed):
            if not secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {options.api_key}"):
                return R.error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                        kind="authentication_error", code="invalid_api_key")
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)
    app.add_middleware(Measured, requests=metrics["requests"], latency=metrics["latency"])  # outermost: sees every answer

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

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> str:
        info = {"model": served.name, "api_key": bool(options.api_key)}
        if task is not None:
            info |= {"task": task.task, "endpoint": TASK_ENDPOINTS.get(task.task, "embeddings")}
        else:
            info["chat"] = bool(getattr(served.tokenizer, "chat_template", None))
        return playground_page(info)

    @app.get("/health")
    async def health():
        if scheduler is None:
            return {"status": "ok", "model": served.name, "task": served.task}
        stuck = scheduler.seconds_without_progress()
        answer = {"status": "ok", "model": served.name, "waiting": scheduler.waiting, "running": scheduler.running,
                  "seconds_without_progress": round(stuck, 1)}
        if stuck > options.stall_after_s:
            return JSONResponse(answer | {"status": "stalled"}, status_code=503)
        return answer

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict:
        listed = [{"id": served.name, "object": "model", "created": 0, "owned_by": "lmforge"}
                  | ({"task": task.task} if task is not None else {"engine": served.engine})]
        for adapter in getattr(served, "adapters", ()):  # as vLLM lists --lora-modules: the base is the parent
            listed.append({"id": adapter, "object": "model", "created": 0, "owned_by": "lmforge", "parent": served.name})
        return {"object": "list", "data": listed}

    if task is not None:
        if task.task in TASK_ENDPOINTS:
            add_task_routes(app, task, BadRequest)
        if task.embedder is not None:
            add_embedding_route(app, task.name, task.embedder, BadRequest)
    else:
        add_generation_routes(app, served, options, scheduler, metrics)
    return app
