"""A chat answer with tools streamed as OpenAI streams it, while it is decoded.

`ToolCallDeltas` turns the output's text pieces into OpenAI `delta`s:
- a forced call (`tool_choice` required or a named function; decoded as `{"name": …, "arguments": …}`): the
  call's id and name once the name is written, then its arguments piece by piece;
- `auto`: the reply as it is written, held back only where it may begin a call (a `<tool_call>` marker, or an
  output that opens with `{`); calls found when the output ends are sent then (a call is known once written);
- `none`: the reply as it is written.
The arguments' pieces join to the JSON text the model wrote (the non-streamed answer re-serialises it).
"""

from __future__ import annotations

import json
import re

from lmforge.serve.tools import Tool, forced_call, new_call, parse_tool_calls

FORCED_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')
MARKER = "<tool_call>"


class ToolCallDeltas:
    """OpenAI chat `delta`s of one streamed answer, from its text pieces (`push`) and its end (`finish`)."""

    def __init__(self, mode: str, tools: list[Tool] | None) -> None:
        self.mode, self.tools = mode, tools or []
        self.text = ""
        self.sent = 0  # characters of `text` sent as content (auto, none) or as arguments (forced, from `start`)
        self.call: dict | None = None  # a forced call whose name is sent
        self.start = 0  # where a forced call's arguments begin in `text`
        self.holding = False  # auto: the rest of the output may be a call; sent when it ends

    def push(self, piece: str) -> list[dict]:
        """The deltas `piece` (the next text of the output) lets us send now."""
        self.text += piece
        if self.mode == "none":
            return self._content(len(self.text))
        if self.mode == "auto":
            return self._auto()
        return self._forced()

    def finish(self, reason: str) -> tuple[list[dict], str]:
        """The last deltas and the finish reason (`tool_calls` where the answer is calls)."""
        if self.mode == "none":
            return self._content(len(self.text)), reason
        if self.mode == "auto":
            content, calls = parse_tool_calls(self.text, self.tools)
            if not calls:
                return self._content(len(self.text)), reason
            before = self.text.find(content) if content else -1
            deltas = self._content(before + len(content)) if before >= 0 else []
            for index, call in enumerate(calls):
                deltas += _call_deltas(index, call)
            return deltas, "tool_calls"
        if reason == "length":  # cut off: the call's text so far, as the non-streamed answer gives it
            return (self._arguments(len(self.text)) if self.call else self._content(len(self.text))), reason
        if self.call is None:
            return _call_deltas(0, forced_call(self.text)[0]), "tool_calls"
        end = self.text.rstrip().removesuffix("}")  # the outer object's closing brace
        return self._arguments(len(end.rstrip())), "tool_calls"

    def _content(self, upto: int) -> list[dict]:
        piece, self.sent = self.text[self.sent:upto], max(self.sent, upto)
        return [{"content": piece}] if piece else []

    def _auto(self) -> list[dict]:
        if self.holding:
            return []
        marker = self.text.find(MARKER)
        if marker >= 0:
            self.holding = True
            return self._content(marker)
        if self.sent == 0 and self.text.lstrip().startswith("{"):
            return []  # may be one call object: known at the end
        if self.sent == 0 and not self.text.strip():
            return []
        return self._content(len(self.text) - _marker_prefix(self.text))

    def _forced(self) -> list[dict]:
        if self.call is None:
            head = FORCED_HEAD.match(self.text)
            if head is None:
                return []
            self.call, self.start = new_call(json.loads(head.group(1)), {}), head.end()
            self.sent = self.start
            return _call_deltas(0, self.call)[:1] + self._forced()  # its id and name
        tail = re.search(r"\s*\}?\s*$", self.text)  # may close the whole call: held back until more comes
        return self._arguments(tail.start())

    def _arguments(self, upto: int) -> list[dict]:
        if self.sent == self.start:  # the arguments start at their first non-blank character
            while self.sent < upto and self.text[self.sent].isspace():
                self.sent = self.start = self.sent + 1
        piece, self.sent = self.text[self.sent:upto], max(self.sent, upto)
        return [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}] if piece else []


def _call_deltas(index: int, call: dict) -> list[dict]:
    """A whole call as OpenAI streams one: its id and name, then its arguments."""
    return [{"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                             "function": {"name": call["function"]["name"], "arguments": ""}}]},
            {"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]}]


def _marker_prefix(text: str) -> int:
    """Length of the longest end of `text` that begins the `<tool_call>` marker (held back until it is known)."""
    return next((n for n in range(min(len(MARKER) - 1, len(text)), 0, -1) if MARKER.startswith(text[-n:])), 0)
