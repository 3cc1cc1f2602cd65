"""The image prefix's shapes, and decoding with a soft prompt through the engine."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmforge.decode.engine import Engine
from lmforge.vision.prefix import ImagePrefix


def test_prefix_maps_features_to_k_embeddings():
    prefix = ImagePrefix(feature_size=12, hidden_size=8, length=3)
    assert prefix(torch.randn(5, 12)).shape == (5, 3, 8)


def test_soft_prompt_equals_the_tokens_it_embeds(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    embeddings = model.get_input_embeddings().weight
    full = Engine(model, [[5, 6, 7, 8], [10, 11, 12]], pad_id=0)
    soft = Engine(model, [[7, 8], [12]], pad_id=0, prompt_embeds=torch.stack([embeddings[[5, 6]], embeddings[[10, 11]]]))
    assert torch.allclose(full.prefill(), soft.prefill(), atol=1e-5)
    tokens = torch.tensor([[3], [4]])
    assert torch.allclose(full.step(tokens), soft.step(tokens), atol=1e-5)
    with pytest.raises(ValueError, match="one \\(k, hidden\\) soft prompt per prompt"):
        Engine(model, [[1]], 0, prompt_embeds=embeddings[None, :2].expand(2, -1, -1))
