"""OpenAI-shaped response bodies and error objects."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from lmforge.decode.candidate import Candidate
from lmforge.decode.text import cut_at_stop_strings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def error_body(message: str, param: str | None = None, kind: str = "invalid_request_error",
               code: str | None = None) -> dict[str, Any]:
    """{"error": {message, type, param, code}}, as the OpenAI API answers (also as a streamed event)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                   code: str | None = None) -> JSONResponse:
    """The error body with `status`."""
    return JSONResponse(error_body(message, param, kind, code), status_code=status)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finish_reason(candidate: Candidate, text: str, full_text: str, max_tokens: int) -> str:
    """"length" when the output ran out of tokens; "stop" for EOS or a stop string."""
    return "stop" if len(text) < len(full_text) or len(candidate.tokens) < max_tokens else "length"


def choice_text(tokenizer: PreTrainedTokenizerBase, candidate: Candidate, stops: list[str],
                max_tokens: int) -> tuple[str, str]:
    """(output text cut at the first stop string, its finish reason)."""
    full = tokenizer.decode(candidate.tokens, skip_special_tokens=True).rstrip("\ufffd")  # a character cut short
    text = cut_at_stop_strings(full, stops)
    return text, finish_reason(candidate, text, full, max_tokens)


def token_logprobs(tokenizer: PreTrainedTokenizerBase, candidate: Candidate) -> list[dict[str, Any]]:
    """Chat-style log-probs: per token its text, log-prob, bytes and the top alternatives."""
    def entry(token: int, logprob: float) -> dict[str, Any]:
        text = tokenizer.decode([token])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
    return [entry(step["token"], step["logprob"]) | {"top_logprobs": [entry(t, v) for t, v in step["top"]]}
            for step in candidate.steps]


def completion_logprobs(tokenizer: PreTrainedTokenizerBase, candidate: Candidate) -> dict[str, Any]:
    """Legacy completions log-probs: tokens, token_logprobs, top_logprobs (dicts), text_offset."""
    tokens = [tokenizer.decode([step["token"]]) for step in candidate.steps]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {"tokens": tokens, "token_logprobs": [step["logprob"] for step in candidate.steps],
            "top_logprobs": [{tokenizer.decode([t]): v for t, v in step["top"]} for step in candidate.steps],
            "text_offset": offsets}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def envelope(kind: str, model: str, choices: list[dict], request_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": request_id, "object": kind, "created": int(time.time()), "model": model, "choices": choices} | extra
