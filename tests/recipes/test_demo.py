"""`lmforge demo` wiring: packaged chatterbot data → the ordinary train recipe (tiny model, one epoch)."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from lmforge.packages import package_dir


def test_demo_trains_on_chatterbot_topics(tmp_path, tiny_bert, monkeypatch, capsys):
    if package_dir("chatterbot_corpus") is None:
        pytest.skip("chatterbot-corpus is not installed (make test installs it)")
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "demo"
    assert main(["demo", f"model={tiny_bert}", "train.epochs=1", "train.patience=null", "data.max_train_samples=300",
                 "train.tensorboard=false", f"train.output_dir={run}"]) == 0
    assert "chatterbot-corpus utterances" in capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    assert report["split"] == "test" and len(report["labels"]) >= 15
    assert (tmp_path / "cache" / "data" / "chatterbot-topics.jsonl").is_file()
