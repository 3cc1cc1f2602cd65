"""Regex and JSON-schema constrained output through outlines-core's token automaton (no hand-written FSM).

Compiling is bounded (automaton_build.py: a states estimate, then a child process with a deadline) and
cached: the server compiles a request's constraint before it queues, so decoding never waits on one.

`outlines-core` compiles a regex (a JSON schema becomes one) over the tokenizer's vocabulary into an
index: from each state, the tokens that keep the output a prefix of a match. Its vocabulary is
built here from the local tokenizer, as exact bytes per token (byte-level BPE and SentencePiece
alike), so nothing is downloaded.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from lmforge.decode.automaton_build import (
    BudgetExceeded,
    CompileBudget,
    CompileCancelled,
    CompileFailed,
    compile_index,
)
from lmforge.errors import ConfigError


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for every byte, reversed."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes, strict=True)}


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> dict[int, bytes]:
    """The exact bytes each ordinary (non-special) token adds to the text."""
    byte_level = "ByteLevel" in type(tokenizer.backend_tokenizer.decoder).__name__ if hasattr(tokenizer, "backend_tokenizer") \
        else False
    decoder = _byte_decoder()
    special = set(tokenizer.all_special_ids)
    out: dict[int, bytes] = {}
    for token, index in tokenizer.get_vocab().items():
        if index in special:
            continue
        if byte_level and all(ch in decoder for ch in token):
            out[index] = bytes(decoder[ch] for ch in token)
        elif token.startswith("<0x") and token.endswith(">") and len(token) == 6:  # SentencePiece byte fallback
            out[index] = bytes([int(token[3:5], 16)])
        else:
            out[index] = token.replace("▁", " ").encode("utf-8")
    return out


def schema_text(schema: str) -> str:
    """A JSON schema given inline or as a .json file path, as JSON text (checked to parse)."""
    text = Path(schema).read_text(encoding="utf-8") if schema.strip().endswith(".json") and Path(schema).is_file() else schema
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConstraintInvalid("decode.json_schema", f"not JSON: {exc}", "; give the schema inline or the path of a "
                                ".json file") from None
    return text


class ConstraintInvalid(ConfigError):
    """A regex or JSON schema outlines-core cannot compile: `field` names it, `reason` says why (no file paths)."""

    def __init__(self, field: str, reason: str, hint: str = "") -> None:
        what = "not a usable JSON schema" if field.endswith("json_schema") else "not a usable regular expression"
        super().__init__(f"{field}: {what} ({reason}){hint}")
        self.field, self.reason = field, reason


class ConstraintTooCostly(ConfigError):
    """A regex or JSON schema over its compile budget: `limit` is "states" or "seconds"."""

    def __init__(self, field: str, exceeded: BudgetExceeded) -> None:
        self.field, self.limit, self.value, self.allowed = field, exceeded.limit, exceeded.value, exceeded.allowed
        super().__init__(f"{field}: {self.describe()}; simplify it (fewer or smaller counted repeats, shorter "
                         "maxLength, fewer optional properties)")

    def describe(self) -> str:
        if self.limit == "states":
            return f"the pattern needs about {self.value:,} automaton states, over the limit of {self.allowed:,}"
        return f"compiling it took over {self.allowed:g} s, the limit"


_VOCABULARIES: dict[int, tuple[PreTrainedTokenizerBase, dict[bytes, list[int]]]] = {}
_INDEXES: OrderedDict[tuple, object] = OrderedDict()  # outlines-core Index objects, which decoding only reads
_CACHE_LOCK = threading.Lock()
CACHED_AUTOMATA = 32  # compiled constraints kept for reuse (the costly part)


def _vocabulary(tokenizer: PreTrainedTokenizerBase) -> dict[bytes, list[int]]:
    """outlines-core's vocabulary of `tokenizer`: each token's bytes → the ids that write them (built once)."""
    with _CACHE_LOCK:
        known = _VOCABULARIES.get(id(tokenizer))
    if known is not None and known[0] is tokenizer:
        return known[1]
    mapping: dict[bytes, list[int]] = {}
    for index, data in token_bytes(tokenizer).items():
        if data:
            mapping.setdefault(data, []).append(index)
    with _CACHE_LOCK:
        _VOCABULARIES[id(tokenizer)] = (tokenizer, mapping)
    return mapping


def compiled_constraint(tokenizer: PreTrainedTokenizerBase, eos_id: int, regex: str | None = None,
                        json_schema: str | None = None, budget: CompileBudget | None = None) -> RegexIndex:
    """A fresh walker over the automaton of `regex` or `json_schema` (inline or a .json path), compiled within
    `budget` (in a child process: see automaton_build.py) or taken from the cache of recent ones."""
    if json_schema is not None:
        json_schema = schema_text(json_schema)
    key = (id(tokenizer), eos_id, regex, json_schema)
    with _CACHE_LOCK:
        if key in _INDEXES:
            _INDEXES.move_to_end(key)
            return RegexIndex(_INDEXES[key], eos_id)
    field = "decode.regex" if regex is not None else "decode.json_schema"
    try:
        index = compile_index(regex, json_schema, eos_id, _vocabulary(tokenizer), budget or CompileBudget())
    except BudgetExceeded as exceeded:
        raise ConstraintTooCostly(field, exceeded) from None
    except CompileFailed as failed:
        raise ConstraintInvalid(field, str(failed)) from None
    except CompileCancelled:
        raise ConfigError(f"{field}: not compiled, lmforge is shutting down") from None
    with _CACHE_LOCK:
        _INDEXES[key] = index
        while len(_INDEXES) > CACHED_AUTOMATA:
            _INDEXES.popitem(last=False)
    return RegexIndex(index, eos_id)


class RegexIndex:
    """Which tokens may follow each prefix of an output that must match a compiled regex (`index`, shared);
    the prefixes walked are remembered per walker (one per decode call)."""

    def __init__(self, index, eos_id: int):
        self.index = index
        self.eos_id = eos_id
        self.states: dict[tuple[int, ...], int | None] = {}

    def state_after(self, tokens: tuple[int, ...]) -> int | None:
        """The automaton state after `tokens`, or None when they left the language (prefixes are remembered:
        each step extends the last one)."""
        known = len(tokens)
        while known and tokens[:known] not in self.states:
            known -= 1
        state = self.states[tokens[:known]] if known else self.index.get_initial_state()
        for i in range(known, len(tokens)):
            state = None if state is None else self.index.get_next_state(state, tokens[i])
            self.states[tokens[: i + 1]] = state
        return state

    def allowed(self, tokens: tuple[int, ...]) -> tuple[list[int], bool]:
        """(tokens that may come next, whether the output may end here)."""
        state = self.state_after(tokens)
        if state is None:
            return [], True
        allowed = [t for t in self.index.get_allowed_tokens(state) if t != self.eos_id]
        return allowed, self.index.is_final_state(state)
