"""Single- and multi-label classification: decoding, scoring against the majority baseline, training."""

from __future__ import annotations

import json

import torch

from lmforge.cli import main
from lmforge.data.labelled import TextExample
from lmforge.tasks.classification import TextClassification, TextClassificationParams
from tests.conftest import write_jsonl


def example(*labels: str) -> TextExample:
    return TextExample("t", None, tuple(labels), "")


def test_single_label_decode_and_score():
    task = TextClassification(TextClassificationParams(), labels=["a", "b", "c"])
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 2.0, 0.0]])
    predictions = task.decode(list(logits), [{}] * 3, [example()] * 3)
    assert [p["label"] for p in predictions] == ["a", "c", "b"]
    scores = task.score(predictions, [example("a"), example("c"), example("a")], [example("a")] * 3 + [example("b")])
    assert scores["accuracy"] == 2 / 3
    assert scores["majority_baseline"] == {"accuracy": 2 / 3, "macro_f1": scores["majority_baseline"]["macro_f1"],
                                           "micro_f1": 2 / 3, "label": "a"}
    assert scores["confusion_matrix"] == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_multi_label_threshold():
    task = TextClassification(TextClassificationParams(multi_label=True, threshold=0.7), labels=["x", "y"])
    logits = torch.tensor([[2.0, 0.5], [-3.0, 3.0]])  # sigmoid: .88/.62, .05/.95
    predictions = task.decode(list(logits), [{}] * 2, [example()] * 2)
    assert [p["labels"] for p in predictions] == [["x"], ["y"]]
    scores = task.score(predictions, [example("x", "y"), example("y")], [example("x"), example("x", "y")])
    assert scores["accuracy"] == 0.5 and scores["micro_f1"] == 0.8


def test_multi_label_training_end_to_end(tmp_path, tiny_bert, capsys):
    rows = []
    for i in range(240):
        flags = {"pos": i % 2 == 0, "cast": i % 3 == 0}
        words = ["superb" if flags["pos"] else "awful", "film", "plot", "story"] + (["actors"] if flags["cast"] else [])
        rows.append({"text": " ".join(words[i % 4:] + words[: i % 4]),
                     "tags": ",".join(k for k, v in flags.items() if v) or "none"})
    path = write_jsonl(tmp_path / "tags.jsonl", rows)
    assert main(["train", "task.name=text-classification", "task.multi_label=true", f"model={tiny_bert}",
                 f"data.train={path}", "data.label_column=tags", "data.label_separator=,", "train.epochs=10",
                 "train.lr=3e-3", "train.batch_size=16", "train.metric=micro_f1", "train.tensorboard=false",
                 f"train.output_dir={tmp_path / 'run'}"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["labels"]) == {"cast", "none", "pos"}
    assert report["micro_f1"] > 0.75 > report["majority_baseline"]["micro_f1"] + 0.3
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(tmp_path / "run"), "--input", str(path), "--output", str(out)]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"text", "labels", "probabilities"} and isinstance(first["labels"], list)
