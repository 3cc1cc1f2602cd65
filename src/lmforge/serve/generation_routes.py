"""The OpenAI generation endpoints: /v1/completions and /v1/chat/completions (plain and streamed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from lmforge.decode.automaton_build import CompileBudget
from lmforge.decode.grammar import ConstraintInvalid, ConstraintTooCostly
from lmforge.decode.text import TextDeltas, check_token_ids, output_automaton, stop_token_ids
from lmforge.errors import LmforgeError
from lmforge.serve import responses as R
from lmforge.serve import tools as T
from lmforge.serve.bad_request import BadRequest
from lmforge.serve.scheduler import Job, QueueFull, Scheduler
from lmforge.serve.schemas import ChatRequest, CompletionRequest, RequestBase
from lmforge.serve.served import ServedModel, ServeOptions
from lmforge.serve.tool_stream import ToolCallDeltas


def add_generation_routes(app: FastAPI, served: ServedModel, options: ServeOptions, scheduler: Scheduler,
                          metrics: dict) -> None:
    """Completions and chat for `served` (a ServedModel), decoded by `scheduler`."""
    tokenizer = served.tokenizer

    def check_model(body: RequestBase) -> str | None:
        """The adapter the request's `model` names (None: the base); a 404 for a name not served here."""
        if body.model == served.name:
            return served.default_adapter
        if body.model in served.adapters:
            return body.model
        names = ", ".join(repr(n) for n in (served.name, *served.adapters))
        raise BadRequest(f"model {body.model!r} is not served here; this server serves {names}", "model", 404,
                         "model_not_found")

    def params_of(body: RequestBase, **kwargs):
        try:
            params = body.decode_params(options.limits, served.decoding, **kwargs)
            check_token_ids(params, tokenizer)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequest(f"lmforge.{where}: {first['msg']}".replace("Value error, ", "") if where else
                             first["msg"].replace("Value error, ", ""), "lmforge") from None
        except LmforgeError as error:
            raise BadRequest(str(error).replace("decode.", "lmforge.", 1), "lmforge") from None
        return params

    stop_ids = served.stop_ids or stop_token_ids(served.model, tokenizer)
    budget = CompileBudget(options.limits.max_automaton_states, options.limits.max_compile_seconds)
    compiling = asyncio.Semaphore(2)  # compiles at once (each a process); more wait their turn

    async def compile_constraint(params, param: str) -> None:
        """Compile the request's regex / JSON schema now, off the event loop and within the server's budget, so
        decoding finds it ready (cached) and no request can hold the scheduler compiling."""
        if not (params.regex or params.json_schema):
            return
        param = "lmforge.regex" if params.regex else param
        try:
            async with compiling:
                await asyncio.to_thread(output_automaton, params, tokenizer, stop_ids, budget)
        except ConstraintTooCostly as costly:
            flag = "--max-automaton-states" if costly.limit == "states" else "--max-compile-seconds"
            raise BadRequest(f"{param}: {costly.describe()} of this server (raise it with lmforge serve {flag}, or "
                             "simplify the pattern)", param, code="limit_exceeded") from None
        except ConstraintInvalid as invalid:
            what = "regular expression" if params.regex else "JSON schema"
            raise BadRequest(f"{param}: not a usable {what} ({invalid.reason})", param) from None
        except LmforgeError as error:  # the server is shutting down
            raise BadRequest(str(error).replace("decode.", "lmforge.", 1), param, 503, "unavailable") from None

    def token_limit(body: RequestBase) -> int:
        return body.token_limit or min(served.default_max_tokens, options.limits.max_tokens)

    def check_length(ids: list[int], param: str) -> list[int]:
        if len(ids) >= served.context_length:
            raise BadRequest(f"{param}: {len(ids)} tokens, more than the model's context of {served.context_length}",
                             param, code="context_length_exceeded")
        return ids

    def prompt_ids(prompt: str | list[int]) -> list[int]:
        """A completion prompt's tokens: its text tokenised, or the ids it gave (checked against the vocabulary)."""
        if isinstance(prompt, str):
            return tokenizer(prompt)["input_ids"]
        vocabulary = len(tokenizer)
        if outside := [t for t in prompt if not 0 <= t < vocabulary]:
            raise BadRequest(f"prompt: token id {outside[0]} is not in the vocabulary (ids 0 to {vocabulary - 1})",
                             "prompt")
        return list(prompt)

    async def run(job: Job, request: Request) -> list:
        started = time.perf_counter()
        try:
            future = asyncio.wrap_future(scheduler.submit(job))
        except QueueFull as full:
            raise BadRequest(str(full), status=429, code="rate_limit_exceeded") from None
        deadline = started + options.request_timeout_s
        while not future.done():  # a client that leaves, or a request out of time, frees its rows
            await asyncio.wait([future], timeout=min(0.25, max(deadline - time.perf_counter(), 0.0)))
            if future.done():
                break
            if time.perf_counter() >= deadline:
                job.abandon()
                raise BadRequest(f"no answer within {options.request_timeout_s:g} s", status=504, code="timeout")
            if await request.is_disconnected():
                job.abandon()
                raise BadRequest("the client disconnected", status=499, code="client_closed_request")
        try:
            outputs = future.result()
        except (LmforgeError, ValueError) as error:
            raise BadRequest(str(error)) from None
        seconds = time.perf_counter() - started
        produced = sum(len(c.tokens) for candidates in outputs for c in candidates)
        metrics["tokens"].inc(produced)
        metrics["speed"].set(produced / seconds if seconds else 0.0)
        return outputs

    def stream(job: Job, request_id: str, chunks, logprobs_of=None) -> StreamingResponse:
        """Server-sent events: `chunks(text, None)` for each text delta, `chunks('', reason, logprobs)` at the end
        (the finish reason and, when `logprobs_of` is given, the output's log-probs), then [DONE]; `chunks` gives
        a list of chunks each time. Strategies that do not hand over tokens as they go (beam search) send their
        text in one delta at the end."""
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
            deadline = time.perf_counter() + options.request_timeout_s
            try:
                while (piece := await asyncio.wait_for(pieces.get(), max(deadline - time.perf_counter(), 0))) is not None:
                    for part in chunks(piece, None):
                        yield f"data: {json.dumps(part)}\n\n"
            except TimeoutError:
                error = R.error_body(f"no answer within {options.request_timeout_s:g} s", kind="timeout", code="timeout")
                yield f"data: {json.dumps(error)}\n\n"
                return
            finally:
                if not future.done():  # the client went away or time ran out mid-stream: free its row
                    job.abandon()
            if future.exception() is not None:
                error = R.error_body(str(future.exception()), kind="server_error")
                yield f"data: {json.dumps(error)}\n\n"
            else:
                candidate = future.result()[0][0]
                text, reason = R.choice_text(tokenizer, candidate, job.stop_strings, job.max_new_tokens)
                metrics["tokens"].inc(len(candidate.tokens))
                logprobs = logprobs_of(candidate) if logprobs_of is not None else None
                for part in (chunks(rest, None) if (rest := text[len(deltas.text):]) else []) + \
                        chunks("", reason, logprobs):
                    yield f"data: {json.dumps(part)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        adapter = check_model(body)
        params = params_of(body, explain=body.logprobs or 0)
        await compile_constraint(params, "lmforge.json_schema")
        prompts = [check_length(prompt_ids(p), "prompt") for p in body.prompts()]
        max_tokens = token_limit(body)
        job = Job(prompts, params, max_tokens, body.stop_strings(), adapter=adapter)
        request_id = R.new_id("cmpl")
        if body.stream:
            if len(prompts) > 1 or body.n > 1:
                raise BadRequest("stream: one prompt and n = 1 per streamed request", "stream")
            return stream(job, request_id, lambda text, reason, logprobs=None: [R.envelope(
                "text_completion", body.model, [{"index": 0, "text": text, "logprobs": logprobs,
                                                  "finish_reason": reason}], request_id)],
                (lambda c: R.completion_logprobs(tokenizer, c)) if body.logprobs is not None else None)
        outputs = await run(job, request)
        choices = []
        for candidates in outputs:
            for candidate in candidates:
                text, reason = R.choice_text(tokenizer, candidate, job.stop_strings, max_tokens)
                logprobs = R.completion_logprobs(tokenizer, candidate) if body.logprobs is not None else None
                choices.append({"index": len(choices), "text": text, "logprobs": logprobs, "finish_reason": reason})
        completion_tokens = sum(len(c.tokens) for candidates in outputs for c in candidates)
        extra = {"lmforge": {"experts": job.routes}} if job.routes is not None else {}
        return R.envelope("text_completion", body.model, choices, request_id,
                          usage=R.usage(sum(len(p) for p in prompts), completion_tokens), **extra)

    def chat_prompt(body: ChatRequest, tools: list[dict] | None) -> tuple[list[int], list[dict] | None]:
        """(the prompt's tokens, the FAQ entries retrieved, if any) of a chat request: content parts joined, tool
        calls and answers in the history, `tools` through the chat template."""
        messages = []
        for n, message in enumerate(body.messages):
            if message.has_images():
                raise BadRequest(f"messages.{n}.content: {served.name} reads text only; an image_url part needs a "
                                 "served model that reads images", f"messages.{n}.content")
            try:
                messages.append(T.history_message("system" if message.role == "developer" else message.role,
                                                  message.text(), message))
            except ValueError as error:
                raise BadRequest(f"messages.{n}.{error}", f"messages.{n}.tool_calls") from None
        if tools and not T.renders_tools(tokenizer, messages, tools):
            raise BadRequest(f"tools: the chat template of {served.name} does not render tools (it was not trained to "
                             "call them); serve a model whose template does, such as Qwen 2.5 or Llama 3.1", "tools")
        retrieved = None
        if served.retriever is not None:
            messages, retrieved = served.retriever.ground(messages)
        prompt = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
        return check_length(list(prompt), "messages"), retrieved

    def chat_message(body: ChatRequest, mode: str, text: str, reason: str) -> tuple[dict, str]:
        """The assistant's message and finish reason: the reply, or the tool calls read from the output."""
        calls: list[dict] = []
        content: str | None = text
        if mode not in ("none", "auto") and reason != "length":
            content, calls = None, T.forced_call(text)
        elif mode == "auto":
            content, calls = T.parse_tool_calls(text, body.tools)
        if not calls:
            return {"role": "assistant", "content": text}, reason
        return {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"

    def chat_chunks(body: ChatRequest, mode: str, request_id: str):
        """`stream`'s chunks of a chat answer: the reply's text as it comes or, with tools, OpenAI's
        `delta.tool_calls` as the call is written (serve/tool_stream.py)."""
        deltas = ToolCallDeltas(mode, body.tools)

        def chunk(delta: dict, reason: str | None = None, logprobs: dict | None = None) -> dict:
            choices = [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]
            return R.envelope("chat.completion.chunk", body.model, choices, request_id)

        def chunks(text: str, reason: str | None, logprobs: dict | None = None) -> list[dict]:
            found, reason = (deltas.push(text), None) if reason is None else deltas.finish(reason)
            parts = [chunk({"role": "assistant"} | delta) for delta in found]
            return parts + [chunk({}, reason, logprobs)] if reason is not None else parts
        return chunks

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        adapter = check_model(body)
        if not getattr(tokenizer, "chat_template", None):
            raise BadRequest(f"{served.name} has no chat template; use /v1/completions", "messages")
        mode = body.tool_mode()
        forced = mode not in ("none", "auto")
        try:
            schema = body.response_format.schema_text() if body.response_format else None
        except ValueError as error:
            raise BadRequest(str(error), "response_format") from None
        if forced:
            schema = T.call_schema(body.tools, mode)
        explain = (body.top_logprobs or 1) if body.logprobs else 0
        params = params_of(body, json_schema=schema, explain=explain,
                           schema_param="tools" if forced else "response_format.json_schema.schema")
        await compile_constraint(params, "tools" if forced else
                                 "response_format" if schema is not None else "lmforge.json_schema")
        tools = T.template_tools(body.tools) if body.tools else None
        prompt, retrieved = await asyncio.to_thread(chat_prompt, body, tools)
        max_tokens = token_limit(body)
        job = Job([prompt], params, max_tokens, body.stop_strings(), adapter=adapter)
        request_id = R.new_id("chatcmpl")
        if body.stream and body.n > 1:
            raise BadRequest("stream: n = 1 per streamed request", "stream")
        if body.stream:
            return stream(job, request_id, chat_chunks(body, mode, request_id),
                          (lambda c: {"content": R.token_logprobs(tokenizer, c)}) if body.logprobs else None)
        outputs = await run(job, request)
        choices = []
        for candidate in outputs[0]:
            text, reason = R.choice_text(tokenizer, candidate, job.stop_strings, max_tokens)
            message, reason = chat_message(body, mode, text, reason)
            logprobs = {"content": R.token_logprobs(tokenizer, candidate)} if body.logprobs else None
            choices.append({"index": len(choices), "message": message, "logprobs": logprobs, "finish_reason": reason})
        usage = R.usage(len(prompt), sum(len(c.tokens) for c in outputs[0]))
        decided = ({"retrieved": retrieved} if retrieved is not None else {}) | \
            ({"expert": job.routes[0]} if job.routes is not None else {})
        extra = {"lmforge": decided} if decided else {}
        return R.envelope("chat.completion", body.model, choices, request_id, usage=usage, **extra)
