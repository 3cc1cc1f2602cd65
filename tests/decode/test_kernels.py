"""The weight-first product used for decoding steps over a few rows."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.decode.kernels import FEW_ROWS, weight_first_linear


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("rows", [1, 2, 4, 16, 17])
def test_weight_first_logits_equal_the_plain_forward_to_rounding(model, rows):
    ids = torch.randint(0, 100, (rows, 1))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with weight_first_linear(model, rows):
            patched = "forward" in model.lm_head.__dict__
            got = model(input_ids=ids).logits
    assert patched == (rows in FEW_ROWS)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_model_is_as_it_was_afterwards_even_after_an_error(model):
    with pytest.raises(RuntimeError), weight_first_linear(model, 4):
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_gradients_flow_through_the_weight_first_product(model):
    ids = torch.randint(0, 100, (3, 1))
    with weight_first_linear(model, 3):
        model(input_ids=ids).logits.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_beam_steps_go_through_the_weight_first_product(model, monkeypatch):
    from lmforge.decode import kernels
    from lmforge.decode.engine import Engine
    from lmforge.decode.strategies.beam import beam_search

    calls = []
    original = kernels._weight_first
    monkeypatch.setattr(kernels, "_weight_first", lambda linear, x: calls.append(x.shape) or original(linear, x))
    beam_search(Engine(model, [[5, 6, 7, 8, 9] * 4], 0), [], 4, [], 3, 1.0, False, 1)  # a 20-token prompt: plain prefill
    assert calls and all(shape[:2] == (3, 1) for shape in calls)  # each step: 3 beams of one token


@pytest.mark.parametrize("weight_first_faster", [True, False])
def test_a_larger_model_takes_the_product_timed_faster_here(monkeypatch, weight_first_faster):
    from lmforge.decode import kernels

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=65536, hidden_size=256, intermediate_size=1024, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval()  # over 16M linear weights: timed, not assumed
    timings = []

    def fastest(plain, first, rounds=4):
        timings.append((plain(), first()))
        return (2.0, 1.0) if weight_first_faster else (1.0, 0.95)  # 0.95: faster, not by the margin
    monkeypatch.setattr(kernels, "_fastest", fastest)
    monkeypatch.setattr(kernels, "_FASTER", {})
    again = LlamaForCausalLM(config).eval()  # another load of the same model decodes alike
    for loaded in (model, model, again):
        with weight_first_linear(loaded, 4):
            assert ("forward" in loaded.lm_head.__dict__) == weight_first_faster
    assert len(timings) == 1  # timed once for these layer shapes and row count
    with weight_first_linear(model, 1):
        assert "forward" not in model.lm_head.__dict__
