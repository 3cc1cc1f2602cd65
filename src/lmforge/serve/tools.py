"""Function calling as OpenAI's chat API has it: `tools`, `tool_choice`, and tool calls read back from the output.

Tools are rendered by the model's own chat template (`apply_chat_template(tools=...)`); a template that ignores
them is refused. `tool_choice`:
- `required` or a named function: the output is decoded under a JSON schema — `{"name": <a tool>, "arguments":
  <that tool's parameters>}` — with lmforge's constrained decoding, so the arguments always validate;
- `auto` (the default with tools): decoded freely, then read back — `<tool_call>{…}</tool_call>` blocks (Hermes,
  Qwen 2.5, SmolLM3) or an output that is one `{"name", "arguments"|"parameters"}` object (Llama 3.1) become
  `tool_calls`, anything else is the reply. Constraining `auto` would make the decoder pick "call or answer" from
  the first token under a schema the model was not trained on; free decoding keeps the model's own choice, as
  vLLM's `auto` does;
- `none`: tools are shown to the model, the output is the reply.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from lmforge.config.strict import STRICT

TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


class FunctionSpec(BaseModel):
    model_config = STRICT

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The function's name.")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema of the arguments (an object).")
    strict: bool | None = Field(None, description="Accepted: lmforge's constrained tool calls always follow the schema.")

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as error:
            where = "/".join(str(p) for p in error.path) or "the schema"
            raise ValueError(f"not a JSON Schema ({where}: {error.message})") from None
        if value.get("type", "object") != "object":
            raise ValueError("the arguments are a JSON object: give a schema with \"type\": \"object\"")
        return value


class Tool(BaseModel):
    model_config = STRICT

    type: Literal["function"]
    function: FunctionSpec


class ChosenFunction(BaseModel):
    model_config = STRICT

    name: str


class NamedToolChoice(BaseModel):
    model_config = STRICT

    type: Literal["function"]
    function: ChosenFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


def check_choice(tools: list[Tool] | None, choice: ToolChoice | None) -> str:
    """The request's mode (none, auto, required or a tool's name); ValueError naming the field where it is off."""
    if not tools:
        if choice not in (None, "none"):
            raise ValueError("tool_choice: give tools too (the functions the model may call)")
        return "none"
    names = [tool.function.name for tool in tools]
    if len(set(names)) != len(names):
        raise ValueError("tools: two tools share a name; give each function its own")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise ValueError(f"tool_choice.function.name: {choice.function.name!r} is not one of the tools "
                             f"({', '.join(names)})")
        return choice.function.name
    return choice or "auto"


def call_schema(tools: list[Tool], mode: str) -> str:
    """The JSON schema a forced call is decoded under: one call of the named tool, or of any tool (required)."""
    def one(tool: Tool) -> dict:
        arguments = tool.function.parameters or {"type": "object"}
        return {"type": "object", "properties": {"name": {"const": tool.function.name}, "arguments": arguments},
                "required": ["name", "arguments"], "additionalProperties": False}
    chosen = [one(t) for t in tools if mode == "required" or t.function.name == mode]
    return json.dumps(chosen[0] if len(chosen) == 1 else {"anyOf": chosen})


def template_tools(tools: list[Tool]) -> list[dict]:
    """Tools as chat templates read them (OpenAI's shape, parameters defaulting to an empty object)."""
    return [{"type": "function", "function": {"name": t.function.name, "description": t.function.description or "",
                                              "parameters": t.function.parameters or {"type": "object",
                                                                                      "properties": {}}}}
            for t in tools]


def renders_tools(tokenizer: Any, messages: list[dict], tools: list[dict]) -> bool:
    """Whether the chat template shows the tools to the model (a template that ignores them renders the same)."""
    def render(**kwargs: Any) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
    return render(tools=tools) != render()


def new_call(name: str, arguments: Any) -> dict:
    """An OpenAI tool call: a fresh id, the function's name and its arguments as JSON text."""
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _as_call(text: str, names: set[str]) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as JSON text
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return new_call(value["name"], arguments) if isinstance(arguments, dict) else None


def parse_tool_calls(text: str, tools: list[Tool]) -> tuple[str | None, list[dict]]:
    """(the reply's text, or None where the output is only calls; the tool calls found) of a free output."""
    names = {tool.function.name for tool in tools}
    blocks = list(TOOL_CALL_BLOCK.finditer(text))
    if blocks:
        calls = [call for block in blocks if (call := _as_call(block.group(1), names)) is not None]
        if calls:
            rest = text[:blocks[0].start()].strip()
            return rest or None, calls
    stripped = text.strip()
    if stripped.startswith("{") and (call := _as_call(stripped, names)) is not None:
        return None, [call]
    return text, []


def forced_call(text: str) -> list[dict]:
    """The tool call of an output decoded under `call_schema` (always one object with name and arguments)."""
    value = json.loads(text)
    return [new_call(value["name"], value["arguments"])]


def history_message(role: str, text: str, message: Any) -> dict:
    """A request message as chat templates read it: tool calls with their arguments as objects, a tool's answer
    with the id of the call it answers."""
    rendered: dict[str, Any] = {"role": role, "content": text}
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            try:
                arguments = json.loads(call.function.arguments)
            except ValueError:
                raise ValueError(f"tool_calls: the arguments of {call.function.name!r} are not JSON "
                                 f"({call.function.arguments[:40]!r})") from None
            calls.append({"id": call.id, "type": "function",
                          "function": {"name": call.function.name, "arguments": arguments}})
        rendered["tool_calls"] = calls
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    if message.name is not None and role == "tool":
        rendered["name"] = message.name
    return rendered
