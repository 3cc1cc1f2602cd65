"""Continuous batching: merged caches give each row its own logits, requests join and leave step by step."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lmforge.decode.continuous import Abandoned, ContinuousBatch, Request
from lmforge.decode.engine import Engine
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def chat(tiny_chat_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval(), AutoTokenizer.from_pretrained(tiny_chat_llama)


def test_merged_engines_give_each_row_its_own_logits(llama):
    first = Engine(llama, [[5, 6, 7, 8, 9, 10], [11, 12]], pad_id=0)
    first.prefill()
    for token in (20, 21, 22):  # the first batch is 3 tokens further along
        first.step(torch.tensor([[token], [token]]))
    second = Engine(llama, [[30, 31, 32], [40]], pad_id=0)
    second.prefill()
    alone = [Engine(llama, [p], pad_id=0) for p in ([5, 6, 7, 8, 9, 10, 20, 21, 22], [11, 12, 20, 21, 22],
                                                      [30, 31, 32], [40])]
    for engine in alone:
        engine.prefill()
    first.merge(second)
    assert first.rows == 4
    for step_token in (50, 51):
        merged = first.step(torch.full((4, 1), step_token))[:, -1]
        separate = torch.cat([engine.step(torch.tensor([[step_token]]))[:, -1] for engine in alone])
        torch.testing.assert_close(merged, separate, atol=1e-4, rtol=1e-4)
    first.select(torch.tensor([2, 3]))  # the long rows leave: their leading positions go
    length = first.length
    first.compact()
    assert first.length < length and first.mask is None or bool(first.mask[:, 0].any())
    merged = first.step(torch.full((2, 1), 60))[:, -1]
    separate = torch.cat([engine.step(torch.tensor([[60]]))[:, -1] for engine in alone[2:]])
    torch.testing.assert_close(merged, separate, atol=1e-4, rtol=1e-4)


def run_until_done(batch: ContinuousBatch, requests: list[Request], joins: dict[int, list[Request]]) -> list[int]:
    """Step the batch, adding `joins[step]` before that step; the step at which each request finished."""
    finished: dict[int, int] = {}
    for request in requests:
        batch.add(request)
    step = 0
    while batch.rows or any(s >= step for s in joins):
        for request in joins.get(step, []):
            batch.add(request)
            requests.append(request)
        batch.step()
        step += 1
        for index, request in enumerate(requests):
            if request.future.done() and index not in finished:
                finished[index] = step
    return [finished[i] for i in range(len(requests))]


def test_requests_join_and_leave_step_by_step_with_the_same_tokens_as_alone(chat):
    model, tokenizer = chat
    batch = ContinuousBatch(model, tokenizer)
    greedy = DecodeParams()
    long = Request([[5, 9, 12, 14]], greedy, 30, [])
    short = Request([[7]], greedy, 3, [])
    late = Request([[30, 31, 32, 33, 34, 35, 36]], greedy, 5, [])
    sampled = Request([[8, 9], [10]], DecodeParams(strategy="sample", seed=3, top_k=5, num_return_sequences=2), 6, [])
    finished = run_until_done(batch, [long, short], {4: [late, sampled]})
    assert finished[1] == 3  # the short request left at once
    assert finished[2] == 4 + 5 and finished[2] < finished[0]  # the late one joined mid-way and left before the long
    for request in (long, short, late):
        alone = generate(model, tokenizer, DecodeRequest(request.prompts, greedy, request.max_new_tokens))
        assert [c.tokens for c in request.future.result()[0]] == [c.tokens for c in alone[0]]
    outputs = sampled.future.result()
    assert [len(candidates) for candidates in outputs] == [2, 2]
    assert batch.rows == 0 and batch.engine is None


def test_an_abandoned_request_leaves_at_the_next_step(chat):
    model, tokenizer = chat
    batch = ContinuousBatch(model, tokenizer)
    stay = Request([[5, 6]], DecodeParams(), 4, [])
    leave = Request([[7, 8, 9]], DecodeParams(min_new_tokens=50), 50, [])
    batch.add(stay)
    batch.add(leave)
    batch.step()
    leave.abandoned = True
    batch.step()
    assert batch.rows == 1
    with pytest.raises(Abandoned):
        leave.future.result(0)
    while batch.rows:
        batch.step()
    assert len(stay.future.result(0)[0][0].tokens) <= 4


def test_a_request_that_fails_to_start_does_not_stop_the_batch(chat):
    model, tokenizer = chat
    batch = ContinuousBatch(model, tokenizer)
    ok = Request([[5, 6]], DecodeParams(), 3, [])
    broken = Request([[]], DecodeParams(), 3, [])
    batch.add(ok)
    batch.add(broken)
    with pytest.raises(ValueError, match="at least one token"):
        broken.future.result(0)
    while batch.rows:
        batch.step()
    assert ok.future.result(0)[0][0].tokens


def test_explanations_match_the_tokens_without_the_stop_token(chat):
    model, tokenizer = chat
    params = DecodeParams(explain=2)
    batch = ContinuousBatch(model, tokenizer)
    request = Request([[5, 6], [7]], params, 12, [])
    batch.add(request)
    while batch.rows:
        batch.step()
    alone = generate(model, tokenizer, DecodeRequest(request.prompts, params, 12))
    for mine, theirs in zip(request.future.result(), alone, strict=True):
        assert [s["token"] for s in mine[0].steps] == mine[0].tokens == theirs[0].tokens
        assert [s["token"] for s in theirs[0].steps] == theirs[0].tokens
    beam = generate(model, tokenizer, DecodeRequest([[5, 6]], DecodeParams(strategy="beam", num_beams=2, explain=1),
                                                    12))[0][0]
    assert [s["token"] for s in beam.steps] == beam.tokens


def test_a_request_whose_rules_fail_leaves_the_others_running(chat):
    model, tokenizer = chat
    batch = ContinuousBatch(model, tokenizer)
    ok = Request([[5, 6]], DecodeParams(), 3, [])
    unmatchable = Request([[7]], DecodeParams(regex="a{2,1}"), 3, [])  # a pattern no automaton can be built from
    batch.add(ok, unmatchable)
    assert unmatchable.future.exception(0) is not None
    while batch.rows:
        batch.step()
    assert ok.future.result(0)[0][0].tokens


def test_generation_progress_counts_tokens(tiny_chat_llama, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import lmforge.decode.generate as decode
    from lmforge.decode.params import DecodeParams

    bars = []

    class Bar:  # records what the progress bar is told
        def __init__(self, total, **kwargs):
            self.total, self.updates = total, []
            bars.append(self)

        def update(self, count):
            self.updates.append(count)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(decode, "tqdm", Bar)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    prompts = [tokenizer("a red dog")["input_ids"], tokenizer("the cat")["input_ids"]]
    for params in (DecodeParams(), DecodeParams(strategy="beam", num_beams=2)):
        decode.generate(model, tokenizer, DecodeRequest(prompts, params, 6, batch_size=1, progress=True))
    greedy, beam = bars
    assert greedy.total == beam.total == 12 and sum(greedy.updates) == sum(beam.updates) == 12
    assert len(greedy.updates) > 2  # greedy reports step by step; beam search once a batch
