"""The official openai client, unchanged, against `lmforge serve`: completions, chat, streaming, JSON schema."""

from __future__ import annotations

import json

import openai
import pytest

from tests.serve.conftest import NAME


@pytest.fixture(scope="module")
def api(live_server):
    url, key = live_server
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def test_models_and_completion(api):
    assert [m.id for m in api.models.list().data] == [NAME]
    completion = api.completions.create(model=NAME, prompt="red dog", max_tokens=5, temperature=0)
    assert completion.object == "text_completion" and isinstance(completion.choices[0].text, str)
    assert completion.usage.completion_tokens <= 5 and completion.choices[0].finish_reason in ("stop", "length")
    again = api.completions.create(model=NAME, prompt="red dog", max_tokens=5, temperature=0)
    assert again.choices[0].text == completion.choices[0].text  # greedy: the same every time


def test_chat_with_logprobs_and_sampling(api):
    chat = api.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "red dog"}], max_tokens=4,
                                       logprobs=True, top_logprobs=2)
    choice = chat.choices[0]
    assert choice.message.role == "assistant" and len(choice.logprobs.content) == chat.usage.completion_tokens
    assert len(choice.logprobs.content[0].top_logprobs) == 2
    sampled = api.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "red"}], max_tokens=4,
                                          temperature=0.9, n=3, seed=1)
    assert len(sampled.choices) == 3


def test_streaming_gives_the_same_text_as_a_plain_request(api):
    messages = [{"role": "user", "content": "blue cat"}]
    plain = api.chat.completions.create(model=NAME, messages=messages, max_tokens=6).choices[0].message.content
    pieces, reasons = [], []
    for chunk in api.chat.completions.create(model=NAME, messages=messages, max_tokens=6, stream=True):
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == plain and reasons[-1] in ("stop", "length")


def test_json_schema_response_format_is_valid_json(api):
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    chat = api.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "a colour as JSON"}], max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "colour", "schema": schema}})
    assert json.loads(chat.choices[0].message.content)["colour"] in ("red", "blue")


def test_a_wrong_api_key_is_refused(live_server):
    url, _ = live_server
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
