"""Image captioning: rows with images, the prefix trained by the normal trainer, saved inside the LM folder,
evaluated with COCO caption metrics, and predictions from image paths."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from lmforge.cli import main
from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.errors import DataError
from lmforge.tasks.image_captioning import ImageCaptioning, ImageCaptioningParams

COLOURS = {"red": "rouge", "blue": "bleu", "green": "vert", "yellow": "jaune"}


def image_rows(folder, copies=6):
    for colour in COLOURS:
        Image.new("RGB", (32, 32), colour).save(folder / f"{colour}.png")
    return [{"image": f"{c}.png", "caption": [f"a {c} dog", f"the {c} dog"]} for c in COLOURS for _ in range(copies)]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_need_an_existing_image_and_a_caption(tmp_path):
    image_rows(tmp_path)
    path = write(tmp_path / "rows.jsonl", [{"image": "red.png", "caption": "a red dog"}, {"image": "nope.png", "caption": "x"},
                                           {"caption": "x"}, {"image": "red.png"}])
    task = ImageCaptioning(ImageCaptioningParams())
    examples = task.read_file(str(path), DataParams(), RowErrors("skip"), labelled=True)
    assert [e.references for e in examples] == [["a red dog"]]
    with pytest.raises(DataError, match="rows.jsonl, line 2: image .*nope.png not found"):
        task.read_file(str(path), DataParams(), RowErrors("raise"), labelled=True)


def train_captioner(tmp_path, model, image_network, epochs: int, tuning: str = "") -> Path:
    """A captioning run on the colour images (dev: one row per colour); its run directory."""
    rows = image_rows(tmp_path)
    train, dev = write(tmp_path / "train.jsonl", rows), write(tmp_path / "dev.jsonl", rows[::6])
    config = tmp_path / "config.yaml"
    config.write_text(f"task: {{name: image-captioning, image_network: {image_network}, prefix_length: 2, "
                      f"max_new_tokens: 4}}\nmodel: {model}\n{tuning}", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(config), f"data.train={train}", f"data.validation={dev}", f"train.output_dir={run}",
                 f"train.epochs={epochs}", "train.lr=1e-3", "train.batch_size=8", "train.tensorboard=false"]) == 0
    return run


def test_train_evaluate_and_predict_a_captioner(tmp_path, tiny_chat_llama, tiny_clip, capsys):
    run = train_captioner(tmp_path, tiny_chat_llama, tiny_clip, epochs=3)
    captured = capsys.readouterr()
    assert "training" in captured.err and captured.out.startswith("validation: cider ")
    report = json.loads((run / "report.json").read_text())
    assert {"bleu_4", "rouge_l", "cider", "samples"} <= set(report) and report["count"] == 4
    with safe_open(str(run / "model" / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("image_prefix.") for k in keys)  # the projection lives beside the LM's weights
    sys.stdin = io.StringIO(f"{tmp_path / 'red.png'}\n")
    try:
        assert main(["predict", str(run), "--input", "-"]) == 0
    finally:
        sys.stdin = sys.__stdin__
    assert isinstance(json.loads(capsys.readouterr().out.splitlines()[0])["generated"], str)


def test_class_names_need_an_image_classifier(tmp_path, tiny_chat_llama, tiny_clip, capsys):
    rows = image_rows(tmp_path, copies=2)
    train = write(tmp_path / "train.jsonl", rows)
    config = tmp_path / "config.yaml"
    config.write_text(f"task: {{name: image-captioning, image_network: {tiny_clip}, class_names: 2}}\n"
                      f"model: {tiny_chat_llama}\n", encoding="utf-8")
    assert main(["train", str(config), f"data.train={train}", f"data.validation={train}",
                 f"train.output_dir={tmp_path / 'run'}"]) == 2
    assert "task.class_names needs an image classifier" in capsys.readouterr().err


def test_lora_captioner_saves_its_prefix_with_the_adapter(tmp_path, tiny_chat_llama, tiny_clip, capsys):
    run = train_captioner(tmp_path, tiny_chat_llama, tiny_clip, epochs=2, tuning="tuning: {peft: {method: lora, r: 4}}\n")
    with safe_open(str(run / "model" / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert any("lora_A" in k for k in keys) and any("image_prefix" in k for k in keys)
    trained = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["validation"]
    report = json.loads((run / "report.json").read_text())  # scored after reloading the saved run
    assert report["cider"] == pytest.approx(trained["cider"]) and report["bleu_4"] == pytest.approx(trained["bleu_4"])
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads((run / "evaluations" / "validation" / "report.json").read_text())["cider"] == pytest.approx(report["cider"])

    from lmforge.runs.load import load_trained
    from lmforge.runs.run_dir import load_run_config

    loads = []
    for seed in (1, 2):  # a prefix the adapter did not restore would be initialised differently each time
        torch.manual_seed(seed)
        _, model, _ = load_trained(run, load_run_config(run))
        loads.append({k: v.clone() for k, v in model.named_parameters()
                      if "image_prefix" in k and "original_module" not in k})  # the copy PEFT trains and saves
    assert loads[0] and all(torch.equal(loads[0][k], loads[1][k]) for k in loads[0])
