"""Tool calls streamed while they are decoded: a forced call's name first, then its arguments piece by piece;
`auto` replies as they come, held back only where a call may begin."""

from __future__ import annotations

import json

from lmforge.serve.tool_stream import ToolCallDeltas
from lmforge.serve.tools import Tool

TOOLS = [Tool.model_validate({"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})]


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def run(mode: str, text: str, reason: str = "stop") -> tuple[list[list[dict]], list[dict], str]:
    """The deltas after each piece, the last deltas and the finish reason."""
    deltas = ToolCallDeltas(mode, TOOLS)
    during = [deltas.push(piece) for piece in pieces(text)]
    last, finish = deltas.finish(reason)
    return during, last, finish


def arguments(deltas: list[dict]) -> str:
    return "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if "tool_calls" in d)


def test_a_forced_call_streams_its_name_then_its_arguments_as_they_are_written():
    text = '{"name": "get_weather", "arguments": {"city": "Paris, the capital of France"}}'
    during, last, finish = run("required", text)
    sent = [d for step in during for d in step]
    first = sent[0]["tool_calls"][0]
    assert first["function"] == {"name": "get_weather", "arguments": ""} and first["id"].startswith("call_")
    streamed = [d for d in sent[1:] if arguments([d])]
    assert len(streamed) >= 5  # the arguments went out piece by piece, before the output ended
    assert json.loads(arguments(sent + last)) == {"city": "Paris, the capital of France"}
    assert finish == "tool_calls" and all(d["tool_calls"][0]["index"] == 0 for d in sent + last)


def test_a_forced_call_cut_off_by_the_length_limit_ends_with_length():
    during, last, finish = run("get_weather", '{"name": "get_weather", "arguments": {"city": "Par', "length")
    assert finish == "length" and arguments([d for step in during for d in step] + last) == '{"city": "Par'


def test_auto_streams_the_reply_as_it_comes():
    during, last, finish = run("auto", "It is sunny in Paris today, I think.")
    assert sum(bool(step) for step in during) >= 5 and finish == "stop"
    assert "".join(d["content"] for step in during + [last] for d in step) == "It is sunny in Paris today, I think."


def test_auto_holds_back_from_the_call_marker_and_sends_the_calls_at_the_end():
    text = 'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    during, last, finish = run("auto", text)
    content = "".join(d.get("content", "") for step in during + [last] for d in step)
    assert content.strip() == "Let me check." and "<" not in content  # a marker split over pieces never leaks
    calls = [d for d in last if "tool_calls" in d]
    assert calls[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(arguments(calls)) == {"city": "Oslo"} and finish == "tool_calls"


def test_auto_output_that_is_one_call_object_is_a_call_and_one_that_is_not_is_the_reply():
    _, last, finish = run("auto", '{"name": "get_weather", "parameters": {"city": "Rome"}}')
    assert finish == "tool_calls" and json.loads(arguments(last)) == {"city": "Rome"}
    during, last, finish = run("auto", '{"answer": 42}')
    assert not any(during) and finish == "stop" and "".join(d["content"] for d in last) == '{"answer": 42}'
