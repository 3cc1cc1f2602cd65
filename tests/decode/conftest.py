"""The tiny random decoder-only and encoder-decoder models the decoding tests share."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

PAD, VOCAB = 0, 300


@pytest.fixture(scope="module")
def llama() -> tuple[torch.nn.Module, list[int]]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, pad_token_id=PAD, eos_token_id=2, bos_token_id=1)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight[2] *= 3  # EOS likely enough that rows stop at different steps
    return model, [2]


@pytest.fixture(scope="module")
def t5() -> tuple[torch.nn.Module, list[int]]:
    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, num_heads=2, d_ff=64, num_layers=1, num_decoder_layers=1,
                      pad_token_id=PAD, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight[1] *= 3
    return model, [1]
