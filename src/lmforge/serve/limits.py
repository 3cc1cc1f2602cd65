"""What a client may ask of the server per request, and what only the person starting it may set.

Over HTTP a request carries inline values only: a JSON schema as JSON, never a path; the draft model,
the decoding policy, image scorers and gates, the weights' precision and the engine name files or load models,
so they are set when the server starts (`lmforge serve --draft-model/--policy/--weights/--engine`) and refused in a
request. Every knob that multiplies the work of a request (beams, outputs, tokens, compiling, static
caches, rule sizes) is bounded by a server-side limit; a request over one gets a 400 naming the limit
and the flag that raises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lmforge.decode.params import DecodeParams
from lmforge.serve.bad_request import BadRequest

#: decode fields a request may not set: they name server files or load models (the flag that sets them instead)
SERVER_ONLY_FIELDS = {
    "draft_model": "lmforge serve --draft-model",
    "policy": "lmforge serve --policy",
    "image_scorer": "not served over HTTP",
    "image_gate": "not served over HTTP",
    "image_weight": "not served over HTTP: requests carry no images",
    "weights": "lmforge serve --weights",
    "engine": "lmforge serve --engine",
}


def _limit(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass
class RequestLimits:
    """Server-side bounds on one request's cost; the defaults are safe for a shared server. Each field is
    a `lmforge serve` flag of the same name (`--max-beams`, `--allow-compile`, …)."""

    max_tokens: int = _limit(1024, "longest output a request may ask for, in tokens")
    max_beams: int = _limit(8, "most beams a request may ask for (lmforge.num_beams)")
    max_n: int = _limit(8, "most outputs per prompt (n, lmforge.num_return_sequences)")
    max_prompts: int = _limit(16, "most prompts in one /v1/completions request")
    max_draft_tokens: int = _limit(16, "most draft tokens per step (lmforge.num_draft_tokens, prompt_lookup_num_tokens)")
    max_explain: int = _limit(5, "most alternatives per token in log-probs (lmforge.explain)")
    max_rule_items: int = _limit(256, "most entries in lmforge.bad_words, choices or logit_bias")
    max_pattern_chars: int = _limit(8_000, "longest lmforge.regex or JSON schema, in characters")
    max_automaton_states: int = _limit(20_000, "most automaton states a regex or JSON schema may need (counted repeats "
                                               "written out), checked before it compiles")
    max_compile_seconds: int = _limit(10, "longest a regex or JSON schema may take to compile (in a separate process, "
                                          "stopped at the limit)")
    allow_compile: bool = _limit(False, "let requests ask for lmforge.compile and cache: static (each new shape "
                                        "compiles for minutes and keeps memory)")
    draft_model: str | None = _limit(None, "the draft model of requests with lmforge.strategy speculative (a packaged "
                                           "alias or folder); without it such requests are refused")
    policy: str | None = _limit(None, "the decoding policy of requests with lmforge.strategy auto (a folder made by "
                                      "lmforge policy); without it such requests are refused")


def _over(param: str, value: Any, limit: int, flag: str) -> BadRequest:
    return BadRequest(f"{param}: {value} is over this server's limit of {limit} (raise it with lmforge serve {flag})",
                      param, code="limit_exceeded")


def checked_extension(fields: dict[str, Any] | None, limits: RequestLimits) -> dict[str, Any]:
    """A request's `lmforge` decode fields, refused where they name server files; its JSON schema inline
    only; a speculative or auto request gets the server's draft model or policy filled in."""
    fields = dict(fields or {})
    for name, where in SERVER_ONLY_FIELDS.items():
        if name in fields:
            raise BadRequest(f"lmforge.{name}: a request may not name server files or models; this is set when the "
                             f"server starts ({where})", f"lmforge.{name}")
    if "json_schema" in fields:
        fields["json_schema"] = inline_schema(fields["json_schema"], "lmforge.json_schema", limits)
    strategy = fields.get("strategy")
    if strategy == "speculative":
        if limits.draft_model is None:
            raise BadRequest("lmforge.strategy: speculative needs a draft model, which this server was not started "
                             "with (lmforge serve --draft-model NAME)", "lmforge.strategy")
        fields["draft_model"] = limits.draft_model
    if strategy == "auto":
        if limits.policy is None:
            raise BadRequest("lmforge.strategy: auto needs a decoding policy, which this server was not started with "
                             "(lmforge serve --policy DIR)", "lmforge.strategy")
        fields["policy"] = limits.policy
    return fields


def inline_schema(schema: Any, param: str, limits: RequestLimits) -> str:
    """A JSON schema sent in a request, as canonical JSON text (never read as a path on the server)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError:
            schema = None
    if not isinstance(schema, dict):
        raise BadRequest(f"{param}: give the JSON schema itself (a JSON object); a request cannot name a file", param)
    text = json.dumps(schema)
    if len(text) > limits.max_pattern_chars:
        raise _over(param, f"{len(text)} characters", limits.max_pattern_chars, "--max-pattern-chars")
    return text


def check_params(params: DecodeParams, limits: RequestLimits) -> None:
    """Refuse a request's validated decoding where it exceeds `limits`."""
    if not limits.allow_compile and (params.compile or params.cache != "dynamic"):
        name = "compile" if params.compile else "cache"
        raise BadRequest(f"lmforge.{name}: compiled steps and static caches are off on this server (start it with "
                         "lmforge serve --allow-compile)", f"lmforge.{name}")
    bounds = {"num_beams": (limits.max_beams, "--max-beams"), "num_return_sequences": (limits.max_n, "--max-n"),
              "num_draft_tokens": (limits.max_draft_tokens, "--max-draft-tokens"),
              "prompt_lookup_num_tokens": (limits.max_draft_tokens, "--max-draft-tokens"),
              "explain": (limits.max_explain, "--max-explain"), "min_new_tokens": (limits.max_tokens, "--max-tokens")}
    for name, (limit, flag) in bounds.items():
        if getattr(params, name) > limit and (name != "num_beams" or params.strategy == "beam"):
            raise _over(f"lmforge.{name}", getattr(params, name), limit, flag)
    for name in ("bad_words", "choices", "logit_bias"):
        if len(getattr(params, name)) > limits.max_rule_items:
            raise _over(f"lmforge.{name}", f"{len(getattr(params, name))} entries", limits.max_rule_items,
                        "--max-rule-items")
    if params.regex is not None and len(params.regex) > limits.max_pattern_chars:
        raise _over("lmforge.regex", f"{len(params.regex)} characters", limits.max_pattern_chars, "--max-pattern-chars")


def check_outputs(n: int, max_tokens: int | None, limits: RequestLimits, token_param: str = "max_tokens",
                  prompts: int = 1) -> None:
    """The OpenAI fields that multiply a request's work: `n` outputs of up to `max_tokens` tokens for each
    of `prompts` prompts."""
    if prompts > limits.max_prompts:
        raise _over("prompt", f"{prompts} prompts", limits.max_prompts, "--max-prompts")
    if n > limits.max_n:
        raise _over("n", n, limits.max_n, "--max-n")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise _over(token_param, max_tokens, limits.max_tokens, "--max-tokens")
