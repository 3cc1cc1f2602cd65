"""What OpenAI clients send: content parts, top-level logit_bias, token-id prompts, and function calling — tools
through the chat template, forced calls decoded under the tool's schema, calls read back from free output, tool
answers in the history, streamed as OpenAI streams them — through the official openai client."""

from __future__ import annotations

import json
import shutil

import jsonschema
import openai
import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions
from lmforge.serve.tools import Tool, parse_tool_calls
from tests.serve.conftest import NAME, running, served

#: a Hermes-style template (as Qwen 2.5's): tools in the system turn (their names only: the tiny model's context is
#: 256 byte-level tokens), calls in <tool_call> blocks
TOOL_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\ntools: {% for t in tools %}{{ t.function.name }} {% endfor %}"
    "<|im_end|>\n{% endif %}"
    "{%- for m in messages %}{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{% for c in m.tool_calls %}<tool_call>{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}"
    "</tool_call>{% endfor %}<|im_end|>\n{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}"
    "</tool_response><|im_end|>\n{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{%- endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "maxLength": 12},
                                                "unit": {"enum": ["celsius", "fahrenheit"]}},
                                                "required": ["city", "unit"], "additionalProperties": False}}}
TOOLS = [WEATHER,
         {"type": "function", "function": {"name": "add", "parameters": {
             "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
             "required": ["a", "b"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "ping", "parameters": {
             "type": "object", "properties": {}, "additionalProperties": False}}}]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}


@pytest.fixture(scope="module")
def tool_model(tiny_chat_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tool-llama")
    shutil.copytree(tiny_chat_llama, folder, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TOOL_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tool_client(tool_model):
    with TestClient(create_app(served(tool_model), ServeOptions())) as client:
        yield client


@pytest.fixture(scope="module")
def plain_client(tiny_chat_llama):
    with TestClient(create_app(served(tiny_chat_llama), ServeOptions())) as client:
        yield client


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": NAME, "max_tokens": 6} | body)


def test_content_parts_read_as_their_text(plain_client):
    parts = chat(plain_client, messages=[{"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                                         {"role": "user", "content": [{"type": "text", "text": "red"},
                                                                      {"type": "text", "text": "dog"}]}])
    plain = chat(plain_client, messages=[{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "red\ndog"}])
    assert parts.status_code == 200, parts.text
    assert parts.json()["choices"][0]["message"] == plain.json()["choices"][0]["message"]
    image = chat(plain_client, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}])
    assert image.status_code == 400 and image.json()["error"]["param"] == "messages.0.content"
    assert "reads text only" in image.json()["error"]["message"]
    odd = chat(plain_client, messages=[{"role": "user", "content": [{"type": "video", "video": "x"}]}])
    assert odd.status_code == 400 and "messages.0.content" in odd.json()["error"]["message"]


def test_top_level_logit_bias_and_token_id_prompts(plain_client, tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    forced = tokenizer.convert_tokens_to_ids("d")
    biased = plain_client.post("/v1/completions", json={"model": NAME, "prompt": "red", "max_tokens": 4,
                                                        "logit_bias": {str(forced): 100}})
    assert biased.status_code == 200, biased.text
    assert biased.json()["choices"][0]["text"] == "dddd"
    for bad, words in (({"x1": 5}, "not a token id"), ({"5": 101}, "outside -100 to 100"),
                       ({"999999": 5}, "not in the vocabulary")):
        response = plain_client.post("/v1/completions", json={"model": NAME, "prompt": "red", "logit_bias": bad})
        assert response.status_code == 400 and words in response.json()["error"]["message"], response.text
    ids = tokenizer("blue cat")["input_ids"]
    as_text = plain_client.post("/v1/completions", json={"model": NAME, "prompt": "blue cat", "max_tokens": 5})
    as_ids = plain_client.post("/v1/completions", json={"model": NAME, "prompt": ids, "max_tokens": 5})
    several = plain_client.post("/v1/completions", json={"model": NAME, "prompt": [ids, ids[:1]], "max_tokens": 5})
    assert as_ids.json()["choices"][0]["text"] == as_text.json()["choices"][0]["text"]
    assert len(several.json()["choices"]) == 2
    outside = plain_client.post("/v1/completions", json={"model": NAME, "prompt": [1, 10**6]})
    assert outside.status_code == 400 and "not in the vocabulary" in outside.json()["error"]["message"]


def test_a_template_without_tools_is_refused(plain_client):
    response = chat(plain_client, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER])
    assert response.status_code == 400 and "does not render tools" in response.json()["error"]["message"]


@pytest.mark.parametrize(("body", "words"), [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "fly"}}}, "'fly' is not one of the tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]}, "not a JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}, "type\": \"object"),
    ({"tool_choice": "required"}, "give tools too"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [WEATHER, WEATHER]}, "share a name"),
    ({"functions": [{"name": "f"}]}, "legacy function-calling"),
])
def test_bad_tool_requests_are_400s_that_say_why(tool_client, body, words):
    response = chat(tool_client, messages=[{"role": "user", "content": "hi"}], **body)
    assert response.status_code == 400 and words in response.json()["error"]["message"], response.text


def test_forced_calls_always_validate(tool_client):
    """tool_choice required over 3 tools, 12 prompts, sampled: every call names a tool and its arguments validate."""
    for n in range(12):
        response = chat(tool_client, messages=[{"role": "user", "content": f"question {n}"}], tools=TOOLS,
                        tool_choice="required", max_tokens=160, temperature=1.0, seed=n)
        assert response.status_code == 200, response.text
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        [call] = choice["message"]["tool_calls"]
        assert call["id"].startswith("call_") and call["type"] == "function"
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
    named = chat(tool_client, messages=[{"role": "user", "content": "weather"}], tools=TOOLS, max_tokens=160,
                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_auto_reads_calls_from_the_output():
    tools = [Tool.model_validate(t) for t in TOOLS]
    text, calls = parse_tool_calls('Let me see.<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
                                   tools)
    assert text == "Let me see." and json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert parse_tool_calls('{"name": "ping", "parameters": {}}', tools)[1][0]["function"]["name"] == "ping"
    assert parse_tool_calls('<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>', tools)[1]
    assert parse_tool_calls('{"name": "fly", "arguments": {}}', tools) == ('{"name": "fly", "arguments": {}}', [])
    assert parse_tool_calls("just words", tools) == ("just words", [])


def test_a_tool_round_trip_through_the_openai_client(tool_model):
    with running(create_app(served(tool_model), ServeOptions())) as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        messages = [{"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]}]
        first = api.chat.completions.create(model=NAME, messages=messages, tools=TOOLS, tool_choice="required",
                                            max_tokens=160)
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}]
        answer = api.chat.completions.create(model=NAME, messages=messages, tools=TOOLS, tool_choice="none", max_tokens=5)
        assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.tool_calls is None
        assert isinstance(answer.choices[0].message.content, str)
        # streamed: the call arrives as OpenAI's delta.tool_calls chunks, the answer as content deltas
        chunks = list(api.chat.completions.create(model=NAME, messages=messages[:1], tools=TOOLS, stream=True,
                                                  tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                  max_tokens=160))
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls]
        arguments = "".join(d.function.arguments or "" for d in deltas)
        assert deltas[0].function.name == "get_weather" and deltas[0].id.startswith("call_")
        jsonschema.validate(json.loads(arguments), SCHEMAS["get_weather"])
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        streamed = api.chat.completions.create(model=NAME, messages=messages, tools=TOOLS, stream=True, max_tokens=5,
                                               tool_choice="none")
        text = "".join(c.choices[0].delta.content or "" for c in streamed)
        assert text == answer.choices[0].message.content
