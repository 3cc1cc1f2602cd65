"""model.device / --device: every verb that runs a model places it where it is told (auto: the best present),
and a device this machine lacks is one line and exit 2 before anything loads."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from lmforge.cli import main
from lmforge.cli_params import RUNS_A_MODEL
from lmforge.errors import ConfigError
from lmforge.models.device import resolve_device, weight_dtype
from tests.conftest import make_pairs, make_sentences, write_jsonl


def test_auto_is_the_best_device_present_and_absent_ones_are_refused():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert weight_dtype("auto", torch.device("cpu")) == torch.float32
    assert weight_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="gpu"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("verb", RUNS_A_MODEL)
def test_every_verb_refuses_a_missing_cuda_device_in_one_line(verb, capsys):
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit, before any model loads
        main([verb, "--device", "cuda"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "no CUDA device" in error and f"lmforge {verb}" in error and len(error.splitlines()) == 1


@pytest.fixture
def placed(monkeypatch):
    """Every device a model was placed on, through whichever recipe or run loader placed it."""
    import lmforge.recipes.generate as generate
    import lmforge.runs.load as load

    seen: list[str] = []

    def spy(real):
        def place(model, device="auto", dtype="auto"):
            seen.append(device)
            return real(model, device, dtype)
        return place
    monkeypatch.setattr(load, "place", spy(load.place))
    monkeypatch.setattr(generate, "place", spy(generate.place))
    return seen


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_task_verbs_honour_the_device(device, tiny_config, tmp_path, placed, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=1", "--device", device]) == 0
    assert f"device: {device}" in (run / "config.yaml").read_text()
    placed.clear()
    assert main(["evaluate", str(run), "--device", device]) == 0
    assert main(["evaluate", str(tiny_config), "--device", device, "--output", str(tmp_path / "before")]) == 0
    texts = write_jsonl(tmp_path / "texts.jsonl", make_sentences(5, seed=9))
    assert main(["predict", str(run), "--input", str(texts), "--device", device]) == 0
    feed = tmp_path / "feed.txt"
    feed.write_text("".join(f"shop\t{r['text']}\n" for r in make_sentences(12, seed=5)), encoding="utf-8")
    assert main(["monitor", str(run), "--input", str(feed), "--device", device]) == 0
    assert placed == [device] * 4
    from lmforge.runs.served_task import served_task

    served_task(run, "x", device)
    assert placed[-1] == device


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_generation_verbs_honour_the_device(device, tiny_chat_llama, tmp_path, placed, capsys, monkeypatch):
    assert main(["generate", str(tiny_chat_llama), "--prompt", "a red dog", "--max-new-tokens", "3", "--device", device]) == 0
    rows = write_jsonl(tmp_path / "rows.jsonl", make_pairs(3, seed=1))
    assert main(["policy", str(tiny_chat_llama), "--data", str(rows), "--output", str(tmp_path / "policy"),
                 "--arms", "greedy,beam2", "--max-new-tokens", "3", "--device", device]) == 0
    from lmforge.recipes.served_model import served_model

    served = served_model(str(tiny_chat_llama), "tiny", device=device)
    assert next(served.model.parameters()).device == resolve_device(device)
    assert placed == [device] * 3
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"source": "a cat"}) + "\n"))
    run = tmp_path / "gen"
    pairs = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    assert main(["train", "task=generation", f"model={tiny_chat_llama}", f"data.train={pairs}", "data.validation_fraction=0",
                 f"train.output_dir={run}", "train.epochs=1", "train.tensorboard=false", "task.max_new_tokens=3"]) == 0
    placed.clear()
    assert main(["generate", str(run), "--prompt", "a cat", "--device", device]) == 0
    assert placed == [device]


def test_model_dtype_reads_weights_straight_in_that_dtype(tiny_config, tmp_path, monkeypatch):
    """model.dtype bf16 under LoRA: the base is read in bf16 (never held in fp32); the adapters stay fp32."""
    import lmforge.tasks.classification as classification

    asked = []
    real = classification.AutoModelForSequenceClassification.from_pretrained

    def spy(*args, **kwargs):
        asked.append(kwargs.get("dtype"))
        return real(*args, **kwargs)
    monkeypatch.setattr(classification.AutoModelForSequenceClassification, "from_pretrained", spy)
    run = tmp_path / "bf16"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=1", "model.dtype=bf16",
                 "tuning.peft.method=lora"]) == 0
    assert asked[0] == torch.bfloat16
    from safetensors.torch import load_file

    saved = load_file(run / "model" / "adapter_model.safetensors")
    assert {t.dtype for name, t in saved.items() if "lora_" in name} == {torch.float32}  # peft keeps adapters fp32
