"""A task's own submodule saved in a model's safetensors: read back by the task, and transformers' load
report (which would list its keys as UNEXPECTED) kept quiet while the model loads."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as transformers_logging

from lmforge.models.load import quiet_about_own_keys, saved_submodule


def test_own_keys_are_read_back_and_the_load_report_is_quiet_only_while_loading(tmp_path):
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    model.add_module("image_prefix", torch.nn.Linear(4, 4))
    model.save_pretrained(tmp_path)
    saved = saved_submodule(tmp_path, "image_prefix")
    assert torch.equal(saved["weight"], model.image_prefix.weight.detach())
    before = transformers_logging.get_verbosity()
    with quiet_about_own_keys(saved):
        assert transformers_logging.get_verbosity() == transformers_logging.ERROR
        LlamaForCausalLM.from_pretrained(tmp_path)
    assert transformers_logging.get_verbosity() == before
    with quiet_about_own_keys({}):  # a base checkpoint: nothing of ours, nothing hidden
        assert transformers_logging.get_verbosity() == before
