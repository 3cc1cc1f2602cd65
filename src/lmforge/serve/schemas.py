"""OpenAI-shaped request bodies, and how they become `DecodeParams`.

Field names, types and ranges follow the OpenAI API, so its clients work unchanged; `lmforge` is our
extension: any `decode:` field (strategy, num_beams, penalty_alpha, regex, …) for this request.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmforge.decode.params import DecodeParams

MAX_TOKENS_LIMIT = 4096


class RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, description="The served model's name (see /v1/models).")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT, description="Longest output, in tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; > 0 samples.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=16, description="Outputs per prompt (sampled).")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
    seed: int | None = Field(None, description="Seed for sampling.")
    stream: bool = Field(False, description="Send the output as server-sent events.")
    stream_options: dict[str, Any] | None = Field(None, description="Accepted for compatibility.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted; only 0 is supported.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted; only 0 is supported.")
    user: str | None = Field(None, description="Accepted for compatibility.")
    lmforge: dict[str, Any] | None = Field(None, description="Any decode field of lmforge for this request.")

    @model_validator(mode="after")
    def _check(self) -> RequestBase:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stops) > 4:
            raise ValueError("stop: at most 4 stop strings")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name}: only 0 is supported; use lmforge.repetition_penalty instead")
        return self

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def decode_params(self, json_schema: str | None = None, explain: int = 0) -> DecodeParams:
        """The request's decoding: greedy unless temperature > 0 or top_p/n ask for sampling; `lmforge` last."""
        fields: dict[str, Any] = {}
        sampling = (self.temperature or 0) > 0 or self.top_p is not None or self.n > 1
        if sampling:
            fields |= {"strategy": "sample", "num_return_sequences": self.n}
            if self.temperature:
                fields["temperature"] = self.temperature
            if self.top_p is not None:
                fields["top_p"] = self.top_p
        if self.seed is not None:
            fields["seed"] = self.seed
        if json_schema is not None:
            fields["json_schema"] = json_schema
        if explain:
            fields["explain"] = explain
        return DecodeParams.model_validate(fields | (self.lmforge or {}))


class CompletionRequest(RequestBase):
    prompt: str | list[str] = Field(..., description="The text to continue (or a list of texts).")
    logprobs: int | None = Field(None, ge=0, le=5, description="Log-probabilities of the chosen and this many most "
                                                               "likely tokens.")
    echo: bool = Field(False, description="Accepted; only false is supported.")

    @model_validator(mode="after")
    def _prompts(self) -> CompletionRequest:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt: give a non-empty string or list of non-empty strings")
        if self.echo:
            raise ValueError("echo: only false is supported")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "developer"]
    content: str
    name: str | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    def schema_text(self) -> str | None:
        """The JSON schema constrained decoding follows (json_object: any JSON object)."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return json.dumps({"type": "object"})
        if not self.json_schema or not isinstance(self.json_schema.get("schema"), dict):
            raise ValueError("response_format.json_schema.schema: give the JSON schema the output must follow")
        return json.dumps(self.json_schema["schema"])


class ChatRequest(RequestBase):
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation so far.")
    logprobs: bool = Field(False, description="Return log-probabilities of the output tokens.")
    top_logprobs: int | None = Field(None, ge=0, le=5, description="With logprobs: this many alternatives per token.")
    response_format: ResponseFormat | None = Field(None, description="json_schema / json_object constrain the output.")
