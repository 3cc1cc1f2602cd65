"""What decoding needs of the tokenizer, torch-free: stop tokens and stop strings, token-id checks, a
constraint's automaton, and text deltas for streaming (a server on llama.cpp imports no torch: see
`decode/light_batch.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lmforge.decode.automaton_build import CompileBudget
from lmforge.decode.params import DecodeParams
from lmforge.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lmforge.decode.grammar import RegexIndex

StopCheck = Callable[[list[int]], bool]  # a row's generated tokens -> stop here (stop strings)


def stop_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS of the tokenizer and of the model's generation config (chat models end turns with one of these)."""
    return stop_ids_of(model.generation_config.eos_token_id, tokenizer)


def stop_ids_of(configured: int | list[int] | None, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's EOS and the generation config's `eos_token_id` (one id or several), sorted."""
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*configured, tokenizer.eos_token_id] if i is not None})


def stop_string_check(tokenizer: PreTrainedTokenizerBase, stop_strings: list[str]) -> StopCheck | None:
    """Whether a row's newest tokens complete one of `stop_strings` (checked after every token)."""
    stops = [s for s in stop_strings if s]
    if not stops:
        return None
    tail = max(len(s) for s in stops) + 2  # every token decodes to at least one character

    def check(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens[-tail:], skip_special_tokens=True)
        return any(s in text for s in stops)
    return check


def cut_at_stop_strings(text: str, stops: list[str]) -> str:
    """`text` up to the earliest stop string.

    >>> cut_at_stop_strings("Un chien.\\nExplanation: ...", ["\\n"])
    'Un chien.'
    """
    ends = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return text[: min(ends)] if ends else text


def check_token_ids(params: DecodeParams, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse `decode.logit_bias` ids that are not tokens of `tokenizer` (before anything decodes)."""
    vocabulary = len(tokenizer)
    outside = sorted(token for token in params.logit_bias if not 0 <= token < vocabulary)
    if outside:
        raise ConfigError(f"decode.logit_bias: token id {outside[0]} is not in the vocabulary (ids 0 to {vocabulary - 1}); "
                          "find a word's ids with the model's tokenizer")


def output_automaton(params: DecodeParams, tokenizer: PreTrainedTokenizerBase, stop_ids: list[int],
                     budget: CompileBudget | None = None) -> RegexIndex | None:
    """The compiled regex / JSON schema `params` constrains the output to, if any (compiled within `budget`, or
    taken from the cache of recent ones)."""
    from lmforge.decode.grammar import compiled_constraint

    if not (params.regex or params.json_schema):
        return None
    return compiled_constraint(tokenizer, stop_ids[0], params.regex, params.json_schema, budget)


class TextDeltas:
    """Turns a row's tokens, one at a time, into the newly complete text: `push(token)` returns the delta
    ("" while a multi-byte character is incomplete, and after a stop string)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: list[str] | None = None) -> None:
        self.tokenizer, self.stop_strings = tokenizer, stop_strings or []
        self.tokens: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the rest
            return ""
        text = cut_at_stop_strings(text, self.stop_strings)
        delta = text[len(self.text):] if len(text) > len(self.text) else ""
        self.text = max(self.text, text, key=len)
        return delta
