"""Image+text classification: the fused head uses the image, works without one, and obeys the gate."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from lmforge.cli import main
from lmforge.tasks.image_text_classification import FusionHead
from lmforge.vision.gate import RelevanceGate


def test_fusion_head_reads_the_concatenation():
    head = FusionHead(text_size=6, image_size=4, labels=3)
    assert head(torch.randn(2, 6), torch.randn(2, 4)).shape == (2, 3)
    assert head.net[1].in_features == 10


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_on_colours(tmp_path, model, image_network, tuning: str = "") -> tuple[Path, Path, Path]:
    """A run where only the image tells the label (red → hot, blue → cold; the text is always the same);
    (run directory, config, dev file)."""
    for colour in ("red", "blue"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
    rows = [{"text": "what is this", "image": f"{c}.png", "label": label} for c, label in (("red", "hot"), ("blue", "cold"))]
    train, dev = write(tmp_path / "train.jsonl", rows * 40), write(tmp_path / "dev.jsonl", rows * 2)
    config = tmp_path / "config.yaml"
    config.write_text(f"task: {{name: image-text-classification, image_network: {image_network}, image_dropout: 0.0}}\n"
                      f"model: {model}\n{tuning}", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(config), f"data.train={train}", f"data.validation={dev}", f"data.test={dev}",
                 f"train.output_dir={run}", "train.epochs=5", "train.lr=1e-2", "train.batch_size=8",
                 "train.tensorboard=false"]) == 0
    return run, config, dev


def test_the_label_only_the_image_shows_is_learnt_and_the_gate_can_withhold_images(tmp_path, tiny_bert, tiny_clip, capsys):
    run, config, dev = train_on_colours(tmp_path, tiny_bert, tiny_clip)
    report = json.loads((run / "report.json").read_text())
    assert report["accuracy"] == 1.0 and report["images_used"] == 4  # the text is the same: only the image tells
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(p["image_used"] for p in predictions)

    capsys.readouterr()
    no_image = write(tmp_path / "plain.jsonl", [{"text": "what is this"}])
    assert main(["predict", str(run), "--input", str(no_image)]) == 0
    assert json.loads(capsys.readouterr().out)["image_used"] is False

    RelevanceGate(weight=0.0, bias=-5.0, scorer=str(tiny_clip)).save(tmp_path / "gate.json")  # never relevant
    gated = tmp_path / "gated"
    assert main(["train", str(config), f"data.train={dev}", f"data.validation={dev}", f"data.test={dev}",
                 f"task.gate={tmp_path / 'gate.json'}", f"train.output_dir={gated}", "train.epochs=1",
                 "train.tensorboard=false"]) == 0
    rows = [json.loads(line) for line in (gated / "predictions.jsonl").read_text().splitlines()]
    assert all(not r["image_used"] and r["image_relevance"] < 0.01 for r in rows)


def test_lora_fusion_classifier_saves_its_head_with_the_adapter(tmp_path, tiny_bert, tiny_clip):
    run, _, _ = train_on_colours(tmp_path, tiny_bert, tiny_clip, "tuning: {peft: {method: lora, r: 4}}\n")
    assert (run / "model" / "adapter_model.safetensors").is_file()
    report = json.loads((run / "report.json").read_text())  # scored after reloading the adapter and its head
    assert report["accuracy"] == 1.0 and report["images_used"] == 4
