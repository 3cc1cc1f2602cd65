"""A static (pre-allocated) KV cache, and compiled steps over it, give the dynamic cache's tokens."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.decode.engine import Engine
from lmforge.decode.generate import STATIC_CACHE_STEP, generate, static_cache_length
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.decode.strategies.sampling import argmax_choice, token_by_token
from tests.decode.conftest import PAD
from tests.decode.test_parity import random_prompts


def test_static_cache_greedy_equals_dynamic_on_a_padded_batch(llama):
    model, stops = llama
    prompts = random_prompts(12)  # 1–20 tokens: left padding and rows that stop at different steps
    dynamic = token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 16, stops)
    static = token_by_token(Engine(model, prompts, PAD, static_length=40), argmax_choice, [], 16, stops)
    assert [c.tokens for c in static] == [c.tokens for c in dynamic]
    torch.testing.assert_close([c.score for c in static], [c.score for c in dynamic])


def test_static_engines_refuse_what_they_cannot_do(llama, t5):
    model, _ = llama
    engine = Engine(model, [[5, 6, 7]], PAD, static_length=8)
    engine.prefill()
    engine.step(torch.tensor([[4]]))
    with pytest.raises(ValueError, match="cannot be cropped"):
        engine.crop(3)
    with pytest.raises(ValueError, match="room for the prompt"):
        Engine(model, [[5] * 10], PAD, static_length=8)
    with pytest.raises(ValueError, match="decoder-only"):
        Engine(t5[0], [[5, 6]], PAD, static_length=8)


def test_decode_params_check_cache_and_compile():
    with pytest.raises(ValidationError, match="compile needs cache: static"):
        DecodeParams(compile=True)
    with pytest.raises(ValidationError, match="greedy and sample"):
        DecodeParams(cache="static", strategy="beam")
    params = DecodeParams(cache="static")
    assert static_cache_length(params, [[1] * 30], None, 300) == 2 * STATIC_CACHE_STEP
    assert static_cache_length(DecodeParams(), [[1]], None, 8) is None


def test_compiled_static_steps_give_greedy_tokens(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there", "the weather today is")]
    expected = generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(min_new_tokens=6), 6))
    compiled = generate(model, tokenizer, DecodeRequest(prompts,
                                                        DecodeParams(min_new_tokens=6, cache="static", compile=True),
                                                        6))
    assert [c[0].tokens for c in compiled] == [c[0].tokens for c in expected]
