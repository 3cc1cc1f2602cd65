"""Label smoothing and R-Drop."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.methods.base import TrainingSession
from lmforge.methods.label_smoothing import LabelSmoothing
from lmforge.methods.rdrop import RDrop, rdrop_loss, symmetric_kl
from lmforge.methods.registry import TuningParams
from lmforge.tasks.classification import TextClassification, TextClassificationParams
from lmforge.tasks.language_modeling import LanguageModeling, LanguageModelingParams


def checked(method, task) -> None:
    method.check(TrainingSession(None, task, "fp32", 1, open_run=None, load_run=None))


def test_symmetric_kl_is_zero_for_equal_and_positive_for_different_rows():
    a = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    b = torch.tensor([[2.0, 1.0, 0.5], [0.0, 0.0, 3.0]])
    p, q = F.softmax(a[0], -1), F.softmax(b[0], -1)
    by_hand = ((p * (p / q).log()).sum() + (q * (q / p).log()).sum()) / 2 / 2  # row 2 is equal: mean over 2 rows
    assert symmetric_kl(a, b).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_label_smoothing_reaches_the_task_loss(tiny_bert):
    torch.manual_seed(0)
    task = TextClassification(TextClassificationParams(), ["neg", "pos"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = dict(tokenizer(["the film was good", "a dull story"], return_tensors="pt", padding=True))
    batch["labels"] = torch.tensor([1, 0])
    plain, logits = task.loss(model, batch)
    method = LabelSmoothing(TuningParams(label_smoothing=0.2))
    checked(method, task)
    smoothed, _ = method.derive_task(task).loss(model, batch)
    expected = F.cross_entropy(logits, batch["labels"], label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-6) and smoothed.item() != plain.item()
    assert task.loss(model, batch)[0].item() == plain.item()  # the built task is left as it was


def test_rdrop_adds_a_divergence_between_two_dropout_passes(tiny_bert):
    task = TextClassification(TextClassificationParams(), ["neg", "pos"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2, hidden_dropout_prob=0.3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = dict(tokenizer(["the film was good", "a dull story"], return_tensors="pt", padding=True))
    batch["labels"] = torch.tensor([1, 0])
    model.eval()  # no dropout: both passes agree, R-Drop is plain cross-entropy
    assert rdrop_loss(task.loss, model, batch, 1.0).item() == pytest.approx(task.loss(model, batch)[0].item(), rel=1e-5)
    model.train()
    torch.manual_seed(0)
    with_rdrop = rdrop_loss(task.loss, model, batch, 100.0)
    torch.manual_seed(0)
    without = rdrop_loss(task.loss, model, batch, 0.0)
    assert with_rdrop.item() > without.item()
    with_rdrop.backward()
    assert model.classifier.weight.grad.abs().sum() > 0


def test_unsupported_combinations_are_config_errors():
    rdrop, smoothing = RDrop(TuningParams(rdrop=1.0)), LabelSmoothing(TuningParams(label_smoothing=0.1))
    with pytest.raises(ConfigError, match="tuning.rdrop"):
        checked(rdrop, LanguageModeling(LanguageModelingParams()))
    with pytest.raises(ConfigError, match="tuning.label_smoothing"):
        checked(smoothing, TextClassification(TextClassificationParams(multi_label=True)))
    with pytest.raises(ConfigError, match="tuning.rdrop"):
        checked(rdrop, TextClassification(TextClassificationParams(multi_label=True)))


def test_train_with_label_smoothing_and_rdrop_through_the_cli(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "tuning.label_smoothing=0.1",
                 "tuning.rdrop=1.0", "train.epochs=1"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert 0.0 <= report["accuracy"] <= 1.0
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'bad'}", "tuning.rdrop=-1"]) == 2
    assert "tuning.rdrop" in capsys.readouterr().err
