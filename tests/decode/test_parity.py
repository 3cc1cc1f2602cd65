"""The engine against HF `generate`: greedy and beam search token for token on 32 prompts of mixed
lengths (one left-padded batch), decoder-only and encoder-decoder; plus invariants between strategies."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
)

from lmforge.decode.engine import Engine, pad_prompts
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.decode.strategies.beam import beam_search
from lmforge.decode.strategies.contrastive import contrastive_search
from lmforge.decode.strategies.prompt_lookup import find_draft, lookup_proposer
from lmforge.decode.strategies.sampling import argmax_choice, token_by_token
from lmforge.decode.strategies.speculative import DraftModel, speculative_decode
from tests.decode.conftest import PAD, VOCAB


def until_stop(row: list[int], stops: list[int]) -> list[int]:
    return next((row[:i] for i, t in enumerate(row) if t in stops), row)


def hf_outputs(model, prompts: list[list[int]], stops: list[int], max_new_tokens: int, pad: int = PAD,
               **options) -> list[list[int]]:
    encoder_decoder = model.config.is_encoder_decoder
    ids, mask = pad_prompts(prompts, pad, left=not encoder_decoder)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=stops, pad_token_id=pad, **options)
    new = out[:, 1:] if encoder_decoder else out[:, ids.shape[1]:]
    return [until_stop(row, stops) for row in new.tolist()]


def prompt_lookup(engine: Engine, max_new_tokens: int, stops: list[int]):
    return speculative_decode(engine, lambda prompt: lookup_proposer(2), [], max_new_tokens, stops, draft_tokens=10)


def random_prompts(count: int = 32, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 20))] for _ in range(count)]


@pytest.mark.parametrize("name", ["llama", "t5"])
def test_greedy_matches_hf_generate(name, request):
    model, stops = request.getfixturevalue(name)
    prompts = random_prompts()
    ours = [c.tokens for c in token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 12, stops)]
    assert ours == hf_outputs(model, prompts, stops, 12)
    assert len({len(o) for o in ours}) > (3 if name == "llama" else 1)  # rows stopped at different steps


@pytest.mark.parametrize("name", ["llama", "t5"])
@pytest.mark.parametrize("options", [{"num_beams": 4}, {"num_beams": 3, "length_penalty": 0.5, "early_stopping": True},
                                     {"num_beams": 4, "early_stopping": "never", "length_penalty": 2.0}])
def test_beam_search_matches_hf_generate(name, options, request):
    model, stops = request.getfixturevalue(name)
    prompts = random_prompts()
    ours = beam_search(Engine(model, prompts, PAD), [], 12, stops, num_beams=options["num_beams"],
                       length_penalty=options.get("length_penalty", 1.0), early_stopping=options.get("early_stopping", False))
    assert [c[0].tokens for c in ours] == hf_outputs(model, prompts, stops, 12, **options)


def test_beam_returns_several_sequences_like_hf(llama):
    model, stops = llama
    prompts = random_prompts(6)
    ours = beam_search(Engine(model, prompts, PAD), [], 10, stops, num_beams=4, num_return_sequences=3)
    reference = hf_outputs(model, prompts, stops, 10, num_beams=4, num_return_sequences=3)
    assert [c.tokens for candidates in ours for c in candidates] == reference
    assert all(a.score >= b.score for candidates in ours for a, b in zip(candidates, candidates[1:], strict=False))


def test_diverse_beam_search_groups_split_only_under_a_penalty(llama):
    model, stops = llama
    prompts = random_prompts(5)
    greedy = [c.tokens for c in token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 8, stops)]
    same = beam_search(Engine(model, prompts, PAD), [], 8, stops, num_beams=3, num_return_sequences=3, num_beam_groups=3)
    assert all([c.tokens for c in candidates] == [g] * 3 for candidates, g in zip(same, greedy, strict=True))
    apart = beam_search(Engine(model, prompts, PAD), [], 8, stops, num_beams=3, num_return_sequences=3, num_beam_groups=3,
                        diversity_penalty=100.0)
    for candidates in apart:  # one beam per group: each group's first token differs from the earlier groups'
        firsts = [c.tokens[0] for c in candidates if c.tokens]
        assert len(set(firsts)) == len(firsts)
    grouped = beam_search(Engine(model, prompts, PAD), [], 8, stops, num_beams=4, num_beam_groups=2, diversity_penalty=0.5,
                          num_return_sequences=4)
    assert all(len(c) == 4 and all(a.score >= b.score for a, b in zip(c, c[1:], strict=False)) for c in grouped)


def test_beam_with_one_beam_and_top_k_one_sampling_equal_greedy(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    prompts = [tokenizer(t)["input_ids"] for t in ("a", "a red dog runs", "the big green cat eats a")]

    def tokens(params: DecodeParams) -> list[list[int]]:
        return [c[0].tokens for c in generate(model, tokenizer, DecodeRequest(prompts, params, max_new_tokens=8))]
    greedy = tokens(DecodeParams())
    assert tokens(DecodeParams(strategy="beam", num_beams=1)) == greedy
    assert tokens(DecodeParams(strategy="sample", top_k=1, seed=3)) == greedy


def test_batched_equals_one_prompt_at_a_time(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    prompts = [tokenizer(t)["input_ids"] for t in ("a", "a red dog runs", "the big green cat eats a")]
    for params in (DecodeParams(), DecodeParams(strategy="beam", num_beams=3)):
        batched = generate(model, tokenizer, DecodeRequest(prompts, params, max_new_tokens=8, batch_size=3))
        alone = [generate(model, tokenizer, DecodeRequest([p], params, max_new_tokens=8))[0] for p in prompts]
        assert [c[0].tokens for c in batched] == [c[0].tokens for c in alone]


def test_prompt_lookup_gives_greedy_output(llama):
    model, stops = llama
    rng = random.Random(1)
    prompts = []
    for _ in range(8):  # prompts that repeat themselves, so drafts exist
        piece = [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 6))]
        prompts.append((piece * 4)[: rng.randint(6, 24)])
    greedy = [c.tokens for c in token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 16, stops)]
    assert [c.tokens for c in prompt_lookup(Engine(model, prompts, PAD), 16, stops)] == greedy


def counting_steps(engine: Engine) -> list[int]:
    calls: list[int] = []
    original = engine.step
    engine.step = lambda tokens, keep=1: calls.append(tokens.shape[1]) or original(tokens, keep)
    return calls


def test_speculative_with_a_draft_model_gives_greedy_output(llama):
    model, stops = llama
    prompts = random_prompts(6)
    greedy = [c.tokens for c in token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 12, stops)]
    torch.manual_seed(5)
    other = LlamaForCausalLM(model.config).eval()  # a draft that often disagrees
    for draft in (other, model):
        engine = Engine(model, prompts, PAD)
        out = speculative_decode(engine, lambda prompt, d=draft: DraftModel(d, prompt, PAD), [], 12, stops, draft_tokens=4)
        assert [c.tokens for c in out] == greedy
    engine = Engine(model, prompts[:1], PAD)
    calls = counting_steps(engine)
    [same] = speculative_decode(engine, lambda prompt: DraftModel(model, prompt, PAD), [], 12, stops, draft_tokens=4)
    assert same.tokens == greedy[0] and len(calls) <= -(-len(same.tokens) // 5) + 1  # a perfect draft: 5 tokens a pass


def test_find_draft_prefers_the_longest_first_match():
    assert find_draft([1, 2, 3, 9, 2, 3, 7, 2, 3], max_ngram=2, count=3) == [9, 2, 3]
    assert find_draft([5, 3, 1, 2, 3, 9, 2, 3], max_ngram=2, count=2) == [9, 2]  # the bigram beats the earlier 3
    assert find_draft([1, 2, 3, 4], max_ngram=2, count=3) == []
    assert find_draft([4, 1, 5, 1], max_ngram=3, count=1) == [5]


@pytest.mark.slow
def test_smollm2_greedy_and_beam_match_hf_generate():
    from lmforge.models.packaged import locate_packaged
    path = locate_packaged("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts = ["The capital of France is", "Once upon a time, in a small village by the sea,", "def fibonacci(n):",
             "Q: What is 2+2?\nA:", "The three primary colours are", "Write a haiku about rain.", "In 1969,", "Hello"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    stops = [tokenizer.eos_token_id]
    greedy = [c.tokens for c in token_by_token(Engine(model, prompts, tokenizer.pad_token_id), argmax_choice, [], 16, stops)]
    beams = [c[0].tokens for c in beam_search(Engine(model, prompts, tokenizer.pad_token_id), [], 16, stops, num_beams=4)]
    pad = tokenizer.pad_token_id
    assert greedy == hf_outputs(model, prompts, stops, 16, pad)
    assert beams == hf_outputs(model, prompts, stops, 16, pad, num_beams=4)
    text = "The old lighthouse stood on the rocks, and every night its keeper climbed the stairs to light the lamp."
    copy = [tokenizer(f"Repeat this sentence exactly: {text}\nSentence: {text[:30]}")["input_ids"]]
    expected = token_by_token(Engine(model, copy, pad), argmax_choice, [], 24, stops)[0].tokens
    engine = Engine(model, copy, pad)
    calls = counting_steps(engine)
    assert prompt_lookup(engine, 24, stops)[0].tokens == expected
    assert len(calls) < len(expected) / 2  # most forward passes accepted several drafted tokens


def test_contrastive_with_no_penalty_is_greedy_and_scorers_steer_it(llama):
    model, stops = llama
    prompts = random_prompts(8)
    greedy = [c.tokens for c in token_by_token(Engine(model, prompts, PAD), argmax_choice, [], 10, stops)]
    assert [c.tokens for c in contrastive_search(Engine(model, prompts, PAD), [], 10, stops, alpha=0.0)] == greedy
    favourite = 17

    def likes_17(generated: torch.Tensor, candidates: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return (candidates == favourite).float()
    steered = contrastive_search(Engine(model, prompts, PAD), [], 10, stops, alpha=0.0, top_k=model.config.vocab_size,
                                 scorers=[(10.0, likes_17)])
    assert all(c.tokens == [favourite] * 10 for c in steered)  # a heavy scorer decides among all candidates
