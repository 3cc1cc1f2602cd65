"""Function calling on SmolLM2-135M-Instruct: the share of tool calls whose arguments validate against the tool's JSON
schema, with `tool_choice: required` (decoded under the schema by lmforge's constrained decoding) beside `auto`
(free decoding, calls read back from the output), over `--prompts` prompts and 3 tools.

SmolLM2's own chat template has no tools; the server renders them with examples/templates/chatml_tools.jinja
(`lmforge serve --chat-template`). Requests go through the app in process (FastAPI's TestClient), greedy.

    python bench/tool_calls.py --prompts 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jsonschema
from fastapi.testclient import TestClient

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "templates" / "chatml_tools.jinja"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string", "maxLength": 40},
                                          "unit": {"enum": ["celsius", "fahrenheit"]}},
                                          "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "integer"}, "b": {"type": "integer"}},
                                          "required": ["a", "b"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "convert_currency", "description": "Convert money between currencies.",
                                      "parameters": {"type": "object", "properties": {
                                          "amount": {"type": "number"},
                                          "source": {"type": "string", "maxLength": 3},
                                          "target": {"type": "string", "maxLength": 3}},
                                          "required": ["amount", "source", "target"], "additionalProperties": False}}},
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Perth", "Rome", "Seoul"]


def prompts(count: int) -> list[str]:
    made = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            made.append(f"What is the weather like in {CITIES[i % len(CITIES)]} right now?")
        elif kind == 1:
            made.append(f"What is {17 * i + 3} plus {5 * i + 11}?")
        else:
            made.append(f"How much is {10 * i + 5} dollars in euros?")
    return made


def valid_calls(message: dict) -> tuple[bool, bool]:
    """(the message calls a tool, every call's arguments validate against its tool's schema)."""
    calls = message.get("tool_calls") or []
    if not calls:
        return False, False
    for call in calls:
        try:
            jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
        except (jsonschema.ValidationError, ValueError, KeyError):
            return True, False
    return True, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from lmforge.recipes.serve import read_chat_template
    from lmforge.recipes.served_model import served_model
    from lmforge.serve.app import create_app
    from lmforge.serve.served import ServeOptions

    served = served_model("smollm2-135m-instruct", None, "fp32", None, False, "torch")
    served.tokenizer.chat_template = read_chat_template(TEMPLATE)
    questions = prompts(args.prompts)
    with TestClient(create_app(served, ServeOptions())) as client:
        for choice in ("required", "auto"):
            called = valid = 0
            started = time.perf_counter()
            for question in questions:
                response = client.post("/v1/chat/completions", json={
                    "model": served.name, "messages": [{"role": "user", "content": question}], "tools": TOOLS,
                    "tool_choice": choice, "max_tokens": args.max_tokens, "temperature": 0})
                response.raise_for_status()
                made, ok = valid_calls(response.json()["choices"][0]["message"])
                called, valid = called + made, valid + ok
            seconds = time.perf_counter() - started
            label = "constrained (tool_choice required)" if choice == "required" else "unconstrained (tool_choice auto)"
            print(f"{label}: {called}/{len(questions)} answers call a tool, {valid}/{len(questions)} "
                  f"({valid / len(questions):.0%}) with arguments that validate; {seconds:.0f} s")


if __name__ == "__main__":
    main()
