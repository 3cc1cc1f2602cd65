"""Weight-only int8 decoding weights: per-channel quantization, the layer's two paths, the model copy."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.models.precision import decoding_weights
from lmforge.models.quantize import GEMV_MAX_ROWS, Int8Linear, int8_weights, quantize_per_channel


def test_per_channel_quantization_rounds_each_weight_to_within_half_a_step():
    torch.manual_seed(0)
    weight = torch.randn(48, 32) * torch.linspace(0.01, 3, 48)[:, None]  # rows of very different sizes
    quantized, scale = quantize_per_channel(weight)
    assert quantized.dtype == torch.int8 and scale.shape == (48,)
    assert quantized.abs().amax(dim=1).eq(127).all()  # each row uses its whole range
    assert ((quantized.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all()


def test_a_zero_row_quantizes_to_zeros():
    quantized, scale = quantize_per_channel(torch.zeros(2, 8))
    assert torch.equal(quantized, torch.zeros(2, 8, dtype=torch.int8)) and torch.isfinite(scale).all()


@pytest.mark.parametrize("rows", [1, 4, GEMV_MAX_ROWS, 40])  # the int8 kernel up to GEMV_MAX_ROWS, dequantized above
def test_int8_linear_is_close_to_the_fp32_layer_on_both_paths(rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(rows, 3, 64)[:, 0]  # a non-contiguous input
    expected = linear(x)
    out = Int8Linear(linear)(x)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert (out - expected).abs().max() < 0.03 * expected.abs().max()


def test_int8_copy_quantizes_every_linear_including_a_tied_head_and_leaves_the_model_alone():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    quantized = int8_weights(model)
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())
    assert isinstance(quantized.lm_head, Int8Linear)
    assert all(type(m) is not Int8Linear for m in model.modules())  # the original keeps its fp32 layers
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = torch.randint(0, 120, (2, 10))
    with torch.no_grad():
        expected, got = model(input_ids=ids).logits, quantized(input_ids=ids).logits
    assert torch.nn.functional.cosine_similarity(expected.flatten(), got.flatten(), dim=0) > 0.999


def test_int8_decoding_weights_are_made_once_and_again_after_the_weights_change(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    first = decoding_weights(model, "int8")
    assert decoding_weights(model, "int8") is first
    with torch.no_grad():
        model.lm_head.weight.mul_(1.01)  # what an optimizer step does: an in-place change
    assert decoding_weights(model, "int8") is not first
    with pytest.raises(ValueError, match="use fp32, bf16 or int8"):
        decoding_weights(model, "int4")


def test_generate_with_int8_weights_mostly_agrees_with_fp32(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there", "a longer prompt about the weather today")]
    fp32 = generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(min_new_tokens=8), 8))
    int8 = generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(min_new_tokens=8, weights="int8"), 8))
    assert [len(c[0].tokens) for c in int8] == [8, 8]
    assert fp32[0][0].tokens[0] == int8[0][0].tokens[0] and fp32[1][0].tokens[0] == int8[1][0].tokens[0]
