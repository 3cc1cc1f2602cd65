"""Layer-wise learning-rate decay: each layer learns at decay × the rate of the one above it."""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

from lmforge.methods.layerwise_lr_decay import LayerwiseLrDecay
from lmforge.methods.registry import TuningParams, active_methods
from lmforge.train.loop import param_groups


def test_rates_fall_by_the_decay_from_the_head_down_to_the_embeddings(tiny_bert):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    (method,) = active_methods(TuningParams(layerwise_lr_decay=0.5))
    groups = method.param_groups(model, param_groups(model, 0.01), lr=1e-3)
    lr_of = {id(p): (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == (pytest.approx(1e-3), 0.01)
    assert lr_of[id(named["bert.pooler.dense.weight"])][0] == pytest.approx(1e-3)
    assert lr_of[id(named["bert.encoder.layer.1.attention.self.query.weight"])][0] == pytest.approx(5e-4)
    assert lr_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])][0] == pytest.approx(2.5e-4)
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])][0] == pytest.approx(1.25e-4)
    assert lr_of[id(named["bert.embeddings.LayerNorm.bias"])] == (pytest.approx(1.25e-4), 0.0)  # no decay kept
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_off_at_one_and_refused_above():
    assert not LayerwiseLrDecay.enabled(TuningParams())
    with pytest.raises(ValueError, match="layerwise_lr_decay"):
        TuningParams(layerwise_lr_decay=1.5)
