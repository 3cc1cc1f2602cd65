"""A PEFT run's model/ is what peft and transformers expect: adapter files at the top (no config.json there, which
would pass the folder off as a whole model), the labelled config in model/head/, and transformers' own pipeline
loads it — in a fresh process, from a copy of the run somewhere else — and agrees with lmforge's predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from lmforge.cli import main

PIPELINE = """
import json, sys
from transformers import pipeline
out = pipeline("text-classification", model=sys.argv[1], top_k=None)(["a lovely plot", "terrible actors"])
print(json.dumps([{row["label"]: row["score"] for row in rows} for rows in out]))
"""


def test_transformers_pipeline_loads_a_lora_run_copied_elsewhere(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=1", "tuning.peft.method=lora"]) == 0
    assert not (run / "model" / "config.json").exists() and (run / "model" / "adapter_config.json").is_file()
    assert json.loads((run / "model" / "head" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a lovely plot"}\n{"text": "terrible actors"}\n', encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(moved), "--input", str(texts)]) == 0
    ours = [json.loads(line)["probabilities"] for line in capsys.readouterr().out.splitlines()]
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(moved / "model")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for mine, other in zip(ours, theirs, strict=True):  # pipeline names outputs from the base config: LABEL_i
        assert abs(mine["neg"] - other["LABEL_0"]) < 1e-2 and abs(mine["pos"] - other["LABEL_1"]) < 1e-2


def test_a_lora_run_on_a_packaged_alias_loads_where_the_recorded_base_path_is_gone(tmp_path, sentiment_files, capsys):
    """peft records this machine's path of the base; the run also keeps the alias it named, so on a machine
    where the packaged model lives elsewhere (faked: the recorded path points nowhere) lmforge resolves it."""
    import pytest

    from lmforge.models.packaged import locate_packaged

    try:
        locate_packaged("minilm-l6")
    except Exception:  # noqa: BLE001 - the packaged weights are optional in a bare install
        pytest.skip("the packaged MiniLM is not installed")
    run = tmp_path / "run"
    assert main(["train", "task=text-classification", "model=minilm-l6", f"data.train={sentiment_files['train']}",
                 f"data.validation={sentiment_files['validation']}", "data.max_length=32", "train.epochs=1",
                 "tuning.peft.method=lora", f"train.output_dir={run}", "train.tensorboard=false"]) == 0
    assert json.loads((run / "model" / "head" / "base_model.json").read_text()) == {"reference": "minilm-l6"}
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a lovely plot"}\n', encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(texts)]) == 0
    before = capsys.readouterr().out
    adapter_config = run / "model" / "adapter_config.json"
    recorded = json.loads(adapter_config.read_text())
    recorded["base_model_name_or_path"] = str(tmp_path / "another-machine" / "minilm")
    adapter_config.write_text(json.dumps(recorded), encoding="utf-8")
    assert main(["predict", str(run), "--input", str(texts)]) == 0
    assert capsys.readouterr().out == before
