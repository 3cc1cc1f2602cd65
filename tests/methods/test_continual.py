"""Continual learning: replay, EWC, a grown head and the forgetting report."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lmforge.cli import main
from lmforge.methods.continual.ewc import EwcPenalty, fisher_diagonal, grow_head, replay_sample
from tests.conftest import topic_rows, write_jsonl


def test_grown_head_keeps_the_old_rows(tiny_bert):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    old = model.classifier.weight.detach().clone()
    grow_head(model, 2, 5)
    assert model.classifier.weight.shape == (5, old.shape[1]) and model.config.num_labels == 5
    assert torch.equal(model.classifier.weight[:2], old)


def test_replay_sample_is_seeded_and_bounded():
    rows = list(range(100))
    assert replay_sample(rows, 10, 1) == replay_sample(rows, 10, 1) != replay_sample(rows, 10, 2)
    assert replay_sample(rows, 500, 1) == rows


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_distance(tiny_bert):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    batches = [{"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
                "labels": torch.tensor([1])}]
    fisher = fisher_diagonal(model, batches, lambda m, b: m(**b).loss)
    assert all((f >= 0).all() for f in fisher.values()) and any(f.sum() > 0 for f in fisher.values())
    penalty = EwcPenalty(model, fisher, strength=10.0)
    assert penalty(model).item() == 0.0
    with torch.no_grad():
        model.classifier.weight.add_(0.1)
    assert penalty(model).item() > 0


@pytest.mark.parametrize("strategy", [["tuning.continual.replay=150"], ["tuning.continual.ewc=1000"]])
def test_continual_run_reports_forgetting_and_gain(tmp_path, tiny_config, strategy, capsys):
    old_run = tmp_path / "old"
    assert main(["train", str(tiny_config), f"train.output_dir={old_run}", "train.epochs=3"]) == 0
    new_train = write_jsonl(tmp_path / "topics-train.jsonl", topic_rows(200, 1))
    new_dev = write_jsonl(tmp_path / "topics-dev.jsonl", topic_rows(40, 2))
    run = tmp_path / "new"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", f"data.train={new_train}",
                 f"data.validation={new_dev}", f"tuning.continual.previous_run={old_run}", "train.epochs=3",
                 *strategy]) == 0
    report = json.loads((run / "report.json").read_text())
    continual = report["continual"]
    assert report["labels"][:2] == ["neg", "pos"] and set(report["labels"][2:]) == {"food", "sport"}
    old = continual["old_task"]
    assert old["before"]["accuracy"] > 0.8 and old["before"]["macro_f1"] > 0.8  # the old run learnt sentiment
    assert old["forgetting"] == pytest.approx(old["before"]["accuracy"] - old["after"]["accuracy"], abs=1e-4)
    assert old["after"]["within_old_labels"]["accuracy"] >= old["after"]["accuracy"]
    assert continual["new_task"]["after"]["accuracy"] > continual["new_task"]["before"]["accuracy"]
    assert continual["replayed_rows"] == (150 if "replay" in strategy[0] else 0)
    assert "## Continual learning" in (run / "report.md").read_text()
    assert "continual: old task" in capsys.readouterr().out


def test_continual_errors_are_one_line(tmp_path, tiny_config, capsys):
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'x'}",
                 f"tuning.continual.previous_run={tmp_path / 'missing'}"]) == 2
    assert "tuning.continual.previous_run: run directory" in capsys.readouterr().err
