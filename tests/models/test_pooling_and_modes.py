"""`masked_mean` averages only the kept tokens; `eval_mode` restores the model's mode, also after an error."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.modes import eval_mode
from lmforge.models.pooling import masked_mean


def test_masked_mean_ignores_padding_and_gives_zeros_for_an_empty_row():
    states = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_mean(states, mask).tolist() == [[1.0, 2.0], [0.0, 0.0]]


def test_eval_mode_restores_the_mode_even_on_error():
    model = torch.nn.Dropout(0.5).train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    with eval_mode(model.eval()):
        pass
    assert not model.training
