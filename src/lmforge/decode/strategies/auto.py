"""strategy auto: a learned decoding policy picks, per prompt, which of its arms (strategies with their knobs)
decodes it — a strategy that wraps the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine, longest_first, pad_id_of
from lmforge.decode.policy import DecodingPolicy, load_policy
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.decode.strategies.base import DecodingStrategy
from lmforge.decode.strategy_params import AutoParams as Params
from lmforge.models.modes import eval_mode
from lmforge.models.precision import autocast_for, decoding_weights


def by_policy(generate: Callable[..., list[list[Candidate]]], model: PreTrainedModel,
              tokenizer: PreTrainedTokenizerBase, request: DecodeRequest) -> list[list[Candidate]]:
    """Each prompt decoded by `generate` with the arm `decode.policy` picks for it; the shared rules (stops,
    constraints, weights, seed …) of the request's params apply to every arm, and each candidate names its arm. A
    policy that reads the top layer reads it from the decoding's own prefill, which its arms then continue."""
    params, prompts, on_tokens = request.params, request.prompts, request.on_tokens
    policy = load_policy(params.policy)
    shared = params.shared_fields()
    arms = {arm: type(params).model_validate(shared | fields) for arm, fields in policy.arms.items()}
    outputs: dict[int, list[Candidate]] = {}
    for indices, picks, engine, logits in _policy_batches(model, tokenizer, prompts, params, policy, arms.values(),
                                                          request.batch_size, request.precision):
        for arm, arm_params in arms.items():
            rows = [r for r, pick in enumerate(picks) if pick == arm]
            if not rows:
                continue
            chosen = [indices[r] for r in rows]
            relay = None if on_tokens is None else \
                lambda rows, tokens, chosen=chosen: on_tokens([chosen[r] for r in rows], tokens)
            forked = None if engine is None else engine.fork(torch.tensor(rows), logits[rows])
            batch = generate(model, tokenizer, replace(request, prompts=[prompts[i] for i in chosen], params=arm_params,
                                                       on_tokens=relay, inputs=PromptInputs(prefilled=forked)))
            for candidates in batch:
                for candidate in candidates:
                    candidate.arm = arm
            outputs.update(zip(chosen, batch, strict=True))
    return [outputs[i] for i in range(len(prompts))]


def _policy_batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                    params: Any, policy: DecodingPolicy, arms: Iterable[Any], batch_size: int,
                    precision: str) -> Iterator[tuple[list[int], list[str], Engine | None, torch.Tensor | None]]:
    """(prompt indices, the arm picked for each, their prefilled engine and its logits — or None, None when the
    arms cannot continue a shared prefill: the policy reads another layer, or an arm needs a static cache or
    other weights)."""
    weights = decoding_weights(model, params.weights)
    pad_id = pad_id_of(tokenizer)
    shareable = policy.features.layer == -1 and all(arm.cache == "dynamic" and arm.weights == params.weights
                                                    for arm in arms)
    if not shareable:
        picks = policy.choose(policy.features.read(weights, prompts, pad_id, batch_size))
        yield list(range(len(prompts))), picks, None, None
        return
    device = next(weights.parameters()).device
    order = longest_first(prompts)
    with eval_mode(weights):
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch_prompts = [prompts[i] for i in indices]
            engine = Engine(weights, batch_prompts, pad_id)
            engine.keep_hidden = True
            with autocast_for(precision, device):
                logits = engine.prefill()
            picks = policy.choose(policy.features.from_states(engine.prompt_states(), batch_prompts))
            yield indices, picks, engine, logits


STRATEGY = DecodingStrategy(Params, wraps=by_policy)
