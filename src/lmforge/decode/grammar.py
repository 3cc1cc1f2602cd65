"""Regex and JSON-schema constrained output through outlines-core's token automaton (no hand-written FSM).

`outlines-core` compiles a regex (a JSON schema becomes one) over the tokenizer's vocabulary into an
index: from each state, the tokens that keep the output a prefix of a match. Its vocabulary is
built here from the local tokenizer, as exact bytes per token (byte-level BPE and SentencePiece
alike), so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerBase

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


def schema_regex(schema: str) -> str:
    """The regex of a JSON schema given inline or as a .json file path."""
    from outlines_core.json_schema import build_regex_from_schema

    text = Path(schema).read_text(encoding="utf-8") if schema.strip().endswith(".json") and Path(schema).is_file() else schema
    try:
        json.loads(text)
        return build_regex_from_schema(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"decode.json_schema: not a usable JSON schema ({str(exc).splitlines()[0]}); give the schema "
                          "inline or the path of a .json file") from None


class RegexIndex:
    """Which tokens may follow each prefix of an output that must match `regex`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, regex: str, eos_id: int):
        try:
            from outlines_core import Index, Vocabulary
        except ImportError:
            raise ConfigError("regex/JSON-schema output needs outlines-core (a dependency of lmforge): "
                              "pip install outlines-core") from None
        mapping: dict[bytes, list[int]] = {}
        for index, data in token_bytes(tokenizer).items():
            if data:
                mapping.setdefault(data, []).append(index)
        try:
            self.index = Index(regex, Vocabulary(eos_id, mapping))
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"decode.regex: cannot build the token automaton ({str(exc).splitlines()[0]})") from None
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
