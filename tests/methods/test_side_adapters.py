"""Several adapters side by side in one PEFT run, chosen at load time."""

from __future__ import annotations

import json

from lmforge.cli import main


def predictions(path):
    return [json.loads(line)["probabilities"] for line in path.read_text().splitlines()]


def test_adapters_add_list_and_choose_at_load_time(tiny_config, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    lora = ["tuning.peft.method=lora", "tuning.peft.r=4", "train.epochs=1"]
    assert main(["train", str(tiny_config), f"train.output_dir={first}", *lora]) == 0
    assert main(["train", str(tiny_config), f"train.output_dir={second}", "train.seed=7", "train.lr=1e-2", *lora]) == 0
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "the film was good"}\n{"text": "a dull story"}\n', encoding="utf-8")
    outputs = {}
    for name, run, extra in (("first", first, []), ("second", second, []), ("chosen", first, ["--adapter", "sst"])):
        if name == "chosen":
            assert main(["adapters", "add", str(first), str(second), "--name", "sst"]) == 0
        assert main(["predict", str(run), "--input", str(texts), "--output", str(tmp_path / f"{name}.jsonl"), *extra]) == 0
        outputs[name] = predictions(tmp_path / f"{name}.jsonl")
    assert outputs["chosen"] != outputs["first"]
    for chosen, expected in zip(outputs["chosen"], outputs["second"], strict=True):
        assert all(abs(chosen[k] - expected[k]) < 1e-5 for k in expected)
    capsys.readouterr()
    assert main(["adapters", "list", str(first)]) == 0
    assert capsys.readouterr().out.split() == ["default", "(own)", "sst"]
    assert main(["evaluate", str(first), "--adapter", "sst"]) == 0
    assert (first / "evaluations" / "validation-sst" / "report.json").is_file()
    assert main(["predict", str(first), "--input", str(texts), "--adapter", "nope"]) == 2
    assert "has the adapters default, sst" in capsys.readouterr().err
    assert main(["adapters", "add", str(first), str(second), "--name", "sst"]) == 2
    assert "already has an adapter named sst" in capsys.readouterr().err
