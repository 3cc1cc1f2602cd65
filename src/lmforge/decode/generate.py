"""The front door of the decoding engine: prompts (token ids) in, candidates out, in batches.

Prompts are batched longest-first (less padding); each batch gets its own `Engine`, the rules of
`DecodeParams` and the chosen strategy. Stop tokens are the tokenizer's and the model's EOS; stop
strings end a row as soon as its text contains one (the caller cuts the text there).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode import rules as R
from lmforge.decode.candidate import Candidate
from lmforge.decode.engine import Engine, longest_first, pad_id_of
from lmforge.decode.engine_choice import choose_engine
from lmforge.decode.grammar import RegexIndex
from lmforge.decode.guidance import image_guidance
from lmforge.decode.llama_cpp_engine import LlamaCppEngine, llama_cpp_runtime, torch_alone_on_one_thread
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.decode.row_outputs import widest_of
from lmforge.decode.strategies import STRATEGIES, Limits
from lmforge.decode.text import (  # noqa: F401 - the engine's front door names them too
    check_token_ids,
    cut_at_stop_strings,
    output_automaton,
    stop_string_check,
    stop_token_ids,
)
from lmforge.errors import ConfigError
from lmforge.models.modes import eval_mode
from lmforge.models.precision import autocast_for, decoding_weights
from lmforge.models.released_weights import restore_weights
from lmforge.vision.gate import gate_images
from lmforge.vision.scorer import load_scorer


def build_rules(params: DecodeParams, tokenizer: PreTrainedTokenizerBase, prompt_length: int, stop_ids: list[int],
                automaton: RegexIndex | None = None) -> list[R.Rule]:
    """The rules `params` asks for, in HF's order: constraints first, then the sampling filters.
    `automaton` is the compiled regex / JSON schema of `params` (built once per call: it is the costly part)."""
    rules: list[R.Rule] = []
    if params.repetition_penalty is not None:
        rules.append(R.repetition_penalty(params.repetition_penalty))
    if params.no_repeat_ngram_size is not None:
        rules.append(R.no_repeat_ngram(params.no_repeat_ngram_size))
    if params.bad_words:
        rules.append(R.bad_words(word_token_sequences(tokenizer, params.bad_words)))
    if params.logit_bias:
        check_token_ids(params, tokenizer)
        rules.append(R.logit_bias(params.logit_bias))
    if params.choices:
        choices = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in params.choices]
        rules.append(R.closed_choices(choices, prompt_length, stop_ids))
    if automaton is not None:
        rules.append(R.matches_automaton(automaton.allowed, prompt_length, stop_ids))
    if params.min_new_tokens:
        rules.append(R.min_new_tokens(params.min_new_tokens, prompt_length, stop_ids))
    own_rules = STRATEGIES[params.strategy].rules  # e.g. sampling's filters
    return rules + (own_rules(params.strategy_params()) if own_rules is not None else [])


def word_token_sequences(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> list[list[int]]:
    """Each word's tokens as it would appear mid-sentence and at the start (tokenizers differ on the space)."""
    sequences = []
    for word in words:
        for form in (word, " " + word):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if ids and ids not in sequences:
                sequences.append(ids)
    return sequences


STATIC_CACHE_STEP = 256  # static caches round their length up to this, so compiled steps serve many calls


def static_cache_length(params: DecodeParams, prompts: list[list[int]], prompt_embeds: torch.Tensor | None,
                        max_new_tokens: int) -> int | None:
    """Positions a static cache needs for these prompts (rounded up), or None for a dynamic cache."""
    if params.cache != "static":
        return None
    needed = max(len(p) for p in prompts) + (0 if prompt_embeds is None else prompt_embeds.shape[1]) + max_new_tokens
    return -(-needed // STATIC_CACHE_STEP) * STATIC_CACHE_STEP


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             request: DecodeRequest) -> list[list[Candidate]]:
    """Candidates for each of `request.prompts`, best first (one unless num_return_sequences asks for more).

    With `decode.image_weight` > 0 the request's `inputs.images` guide the text (one per prompt); with
    `decode.image_gate`, only where the gate finds an image relevant to its prompt, and the candidates carry the
    decision. See `DecodeRequest` and `PromptInputs` for the rest."""
    params, prompts, inputs = request.params, request.prompts, request.inputs
    max_new_tokens, on_tokens, progress = request.max_new_tokens, request.on_tokens, request.progress
    strategy = STRATEGIES[params.strategy]
    if strategy.wraps is not None:  # a strategy that decodes with the others (auto)
        return strategy.wraps(generate, model, tokenizer, request)
    images, image_scorer = inputs.images, inputs.image_scorer
    if params.image_weight and (images is None or len(images) != len(prompts)):
        raise ConfigError(f"decode.image_weight is {params.image_weight}: give one image per prompt "
                          f"({len(prompts)} prompts, {0 if images is None else len(images)} images)")
    if images is not None and not params.image_weight:
        raise ConfigError("images were given but decode.image_weight is 0: set it (1.0 suits the default scorer) with "
                          "strategy contrastive, or leave the images out")
    if params.image_weight and image_scorer is None:
        image_scorer = load_scorer(params.image_scorer)
    decisions = None
    if params.image_gate:  # the images the gate finds irrelevant to their prompt guide nothing
        texts = inputs.prompt_texts or [tokenizer.decode(p, skip_special_tokens=True) for p in prompts]
        images, decisions = gate_images(params.image_gate, image_scorer, images, texts)
    own_params = params.strategy_params()
    runtime = None
    torch_inputs = inputs.prompt_embeds is not None or inputs.prefilled is not None
    if choose_engine(params, model, torch_inputs) == "llama.cpp":  # llama.cpp runs the forward passes on a GGUF
        if inputs.prompt_embeds is not None or model.config.is_encoder_decoder:
            raise ConfigError("decode.engine llama.cpp decodes decoder-only models from their tokens (no soft prompts); "
                              "use engine torch")
        runtime = llama_cpp_runtime(model, params.weights)
    else:
        model = decoding_weights(restore_weights(model), params.weights)
    pad_id = pad_id_of(tokenizer)
    stop_ids = stop_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(params.seed) if params.seed is not None else None
    limits = Limits(max_new_tokens, stop_ids, stop_string_check(tokenizer, request.stop_strings or []), generator,
                    explain=params.explain, resources=strategy.load(own_params, device) if strategy.load else {})
    automaton = output_automaton(params, tokenizer, stop_ids)
    prefilled, prompt_embeds = inputs.prefilled, inputs.prompt_embeds
    order = longest_first(prompts) if prefilled is None else list(range(len(prompts)))
    batch_size = request.batch_size if prefilled is None else len(prompts)
    outputs: dict[int, list[Candidate]] = {}
    # counted in tokens (at most max_new_tokens a prompt): greedy and sampled rows report each step, other
    # strategies each finished batch
    bar = tqdm(total=len(prompts) * max_new_tokens, desc="generating", unit="tok", disable=not progress, leave=False)
    # llama.cpp never runs the module, and decodes best with torch out of its threads' way
    with eval_mode(model) if runtime is None else torch_alone_on_one_thread(), bar:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch_prompts = [prompts[i] for i in indices]
            if prefilled is not None:
                engine = prefilled
            elif runtime is not None:
                engine = LlamaCppEngine(runtime, batch_prompts, pad_id, max_new_tokens,
                                        len(batch_prompts) * widest_of(params),
                                        params.prefix_cache, separate=params.strategy != "beam")  # beams share cells
            else:
                engine = Engine(model, batch_prompts, pad_id, None if prompt_embeds is None else prompt_embeds[indices],
                                static_cache_length(params, batch_prompts, prompt_embeds, max_new_tokens), params.compile)
            rules = build_rules(params, tokenizer, engine.prompt_length, stop_ids, automaton)
            if params.image_weight:
                limits.resources["scorers"] = image_guidance(image_scorer, [images[i] for i in indices], tokenizer,
                                                             params.image_weight)
            heard = [0]

            def hear(rows: list[int], tokens: list[int], indices: list[int] = indices, heard: list[int] = heard) -> None:
                heard[0] += len(rows)
                bar.update(len(rows))
                if on_tokens is not None:
                    on_tokens([indices[r] for r in rows], tokens)
            limits.on_tokens = hear if on_tokens is not None or progress else None
            try:
                with autocast_for(request.precision, device):
                    batch = strategy.decode(engine, own_params, rules, limits)
            finally:
                if prefilled is None:
                    engine.close()
            bar.update(len(indices) * max_new_tokens - heard[0])  # rows that stopped early, and unheard strategies
            outputs.update(zip(indices, batch, strict=True))
    found = [outputs[i] for i in range(len(prompts))]
    if decisions is not None:  # each candidate carries the gate's call on its image
        for candidates, decision in zip(found, decisions, strict=True):
            for candidate in candidates:
                if decision is not None:
                    candidate.image_relevant, candidate.image_relevance = decision
    return found
