"""OpenAI-shaped request bodies, and how they become `DecodeParams`.

Field names, types and ranges follow the OpenAI API, so its clients work unchanged; `lmforge` is our
extension: any `decode:` field (strategy, num_beams, penalty_alpha, regex, …) for this request.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from lmforge.config.strict import STRICT
from lmforge.decode.engine_choice import runs_on_llama_cpp
from lmforge.decode.params import LLAMA_CPP_STRATEGIES, DecodeParams
from lmforge.serve.bad_request import BadRequest
from lmforge.serve.limits import RequestLimits, check_outputs, check_params, checked_extension, inline_schema
from lmforge.serve.tools import Tool, ToolChoice, check_choice

MAX_TOKENS_LIMIT = 4096
#: OpenAI's legacy function-calling fields (before `tools`), which this server does not implement
FUNCTION_CALLING = ("functions", "function_call")


def unicode_problem(value: Any, where: str = "") -> str | None:
    """Where `value` (parsed JSON) holds text that is not valid Unicode (a lone surrogate such as \\ud800)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if found := unicode_problem(key, where) or unicode_problem(item, f"{where}.{key}" if where else str(key)):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := unicode_problem(item, f"{where}.{index}" if where else str(index)):
                return found
    return None


class ApiModel(BaseModel):
    """A request body: unknown fields and text that is not valid Unicode are refused, naming the field."""

    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if (where := unicode_problem(data)) is not None:
            raise ValueError(f"{where}: the text is not valid Unicode (a lone surrogate such as \\ud800); send UTF-8 text")
        if isinstance(data, dict):
            for name in FUNCTION_CALLING:
                if name in data and name not in cls.model_fields:
                    raise ValueError(f"{name}: the legacy function-calling fields are not supported; send tools and "
                                     "tool_choice instead")
        return data


class RequestBase(ApiModel):

    model: str = Field(..., min_length=1, description="The served model's name (see /v1/models).")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT, description="Longest output, in tokens.")
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT,
                                              description="Longest output, in tokens (the newer name of max_tokens).")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; > 0 samples.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=16, description="Outputs per prompt (sampled).")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
    seed: int | None = Field(None, ge=0, lt=2**64, description="Seed for sampling (0 to 2^64 - 1).")
    stream: bool = Field(False, description="Send the output as server-sent events.")
    stream_options: dict[str, Any] | None = Field(None, description="Accepted for compatibility.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted; only 0 is supported.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted; only 0 is supported.")
    user: str | None = Field(None, description="Accepted for compatibility.")
    logit_bias: dict[str, float] | None = Field(None, description="Token id (as a string) → bias from -100 to 100 "
                                                                  "added to its score, as OpenAI's.")
    lmforge: dict[str, Any] | None = Field(None, description="Any decode field of lmforge for this request.")

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.strip().lstrip("-").isdigit():
                raise ValueError(f"key {key!r} is not a token id; give token ids as strings, e.g. {{\"50256\": -100}}")
            if not -100 <= bias <= 100:
                raise ValueError(f"{key}: {bias} is outside -100 to 100")
        return value

    @model_validator(mode="after")
    def _check(self) -> RequestBase:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stops) > 4:
            raise ValueError("stop: at most 4 stop strings")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name}: only 0 is supported; use lmforge.repetition_penalty instead")
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            raise ValueError("max_completion_tokens: give it or max_tokens, not both with different values")
        return self

    @property
    def token_limit(self) -> int | None:
        """The longest output asked for (max_completion_tokens, else max_tokens)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def token_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    @property
    def prompt_count(self) -> int:
        """Prompts decoded for this request (completions may send a list)."""
        return 1

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def decode_params(self, limits: RequestLimits, server_fields: dict[str, Any] | None = None,
                      json_schema: str | None = None, explain: int = 0,
                      schema_param: str = "response_format.json_schema.schema") -> DecodeParams:
        """The request's decoding: greedy unless temperature > 0 or top_p/n ask for sampling; `lmforge` next;
        `server_fields` (what the server decodes with: engine, weights) last.
        Refused (`BadRequest`) where it names server files or exceeds `limits`; pydantic's ValidationError
        where a field is invalid."""
        check_outputs(self.n, self.token_limit, limits, self.token_param, self.prompt_count)
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
        if self.logit_bias:
            fields["logit_bias"] = {int(key): bias for key, bias in self.logit_bias.items()}
        if json_schema is not None:
            fields["json_schema"] = inline_schema(json_schema, schema_param, limits)
        if explain:
            fields["explain"] = explain
        requested = fields | checked_extension(self.lmforge, limits)
        server_fields = server_fields or {}
        strategy = requested.get("strategy", "greedy")
        if server_fields.get("engine") == "llama.cpp" and strategy not in LLAMA_CPP_STRATEGIES:
            raise BadRequest(f"lmforge.strategy: this server decodes with llama.cpp, which runs strategies "
                             f"{', '.join(LLAMA_CPP_STRATEGIES)}; {strategy!r} needs a server started without "
                             "--engine llama.cpp", "lmforge.strategy")
        params = DecodeParams.model_validate(requested | server_fields)
        if params.engine == "auto":  # this request's engine: llama.cpp where an auto server holds it and it runs there
            on_llama = server_fields.get("engine") == "auto" and runs_on_llama_cpp(params)
            params = params.model_copy(update={"engine": "llama.cpp" if on_llama else "torch"})
        check_params(params, limits)
        return params


class CompletionRequest(RequestBase):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        ..., description="The text to continue, a list of texts, token ids, or a list of token-id lists.")
    logprobs: int | None = Field(None, ge=0, le=5, description="Log-probabilities of the chosen and this many most "
                                                               "likely tokens.")
    echo: bool = Field(False, description="Accepted; only false is supported.")

    @model_validator(mode="after")
    def _prompts(self) -> CompletionRequest:
        prompts = self.prompts() if self.prompt else []
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt: give a non-empty string, token ids, or a list of either")
        if self.echo:
            raise ValueError("echo: only false is supported")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text, or token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)

    @property
    def prompt_count(self) -> int:
        return len(self.prompts())


class TextPart(BaseModel):
    model_config = STRICT

    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    model_config = STRICT

    type: Literal["image_url"]
    image_url: dict[str, Any]


class RefusalPart(BaseModel):
    model_config = STRICT

    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | RefusalPart, Field(discriminator="type")]


class CalledFunction(BaseModel):
    model_config = STRICT

    name: str = Field(..., min_length=1)
    arguments: str = Field(..., description="The arguments as a JSON text, as OpenAI sends them.")


class ToolCall(BaseModel):
    model_config = STRICT

    id: str = Field(..., min_length=1)
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(BaseModel):
    """A message in any role; `content` is text or a list of parts (text, image_url, refusal), as OpenAI's."""

    model_config = STRICT

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant's calls of tools.")
    tool_call_id: str | None = Field(None, description="A tool message: the id of the call it answers.")

    @model_validator(mode="after")
    def _complete(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: give the message's text (only an assistant message with tool_calls may omit it)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("tool_calls: only assistant messages carry tool calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: a tool message answers a call; give that call's id")
        return self

    def text(self) -> str:
        """The message's text: its string, or its text (and refusal) parts joined by newlines."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(part.text if isinstance(part, TextPart) else part.refusal for part in self.content
                         if not isinstance(part, ImagePart))

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(part, ImagePart) for part in self.content)


class ResponseFormat(BaseModel):
    model_config = STRICT

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
    tools: list[Tool] | None = Field(None, max_length=64, description="Functions the model may call.")
    tool_choice: ToolChoice | None = Field(None, description="auto (default with tools), none, required, or "
                                                             "{type: function, function: {name}}.")
    parallel_tool_calls: bool | None = Field(None, description="Accepted; a forced call (required or named) is one "
                                                               "call, auto returns every call the model writes.")

    @model_validator(mode="after")
    def _tools(self) -> ChatRequest:
        mode = self.tool_mode()  # refuses a tool_choice that does not fit the tools
        if self.response_format is not None and self.response_format.type != "text" and mode not in ("none", "auto"):
            raise ValueError("response_format: a forced tool call is decoded under the tool's schema; drop "
                             "response_format or use tool_choice auto")
        return self

    def tool_mode(self) -> str:
        """none, auto, required, or the name of the one function to call."""
        return check_choice(self.tools, self.tool_choice)
