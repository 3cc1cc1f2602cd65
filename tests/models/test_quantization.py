"""model.quantization (QLoRA through bitsandbytes) and the 8-bit optimizer, on CPU."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmforge.cli import main
from lmforge.runs.load import load_trained
from lmforge.runs.run_dir import load_run_config
from tests.tasks.test_generation import toy_files

bitsandbytes = pytest.importorskip("bitsandbytes")


def _qlora_args(tmp_path, tiny_chat_llama, quantization: str, *extra: str) -> list[str]:
    train, dev = toy_files(tmp_path)
    return ["train", "task=generation", f"model={tiny_chat_llama}", "task.prompt=Translate: {source}",
            "task.max_new_tokens=12", f"data.train={train}", f"data.validation={dev}", "data.max_length=48",
            f"model.quantization={quantization}", "tuning.peft.method=lora", "tuning.peft.r=8",
            f"train.output_dir={tmp_path / 'run'}", "train.epochs=6", "train.lr=1e-2", "train.batch_size=16",
            "train.tensorboard=false", *extra]


def _qlora_run(tmp_path, tiny_chat_llama, quantization: str, *extra: str):
    assert main(_qlora_args(tmp_path, tiny_chat_llama, quantization, *extra)) == 0
    return tmp_path / "run"


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_qlora_trains_adapters_on_a_low_bit_base_and_its_run_loads_the_same_way(tmp_path, tiny_chat_llama,
                                                                                quantization, capsys):
    run = _qlora_run(tmp_path, tiny_chat_llama, quantization)
    err = capsys.readouterr().err
    assert "lmforge: training" in err
    history = [json.loads(line)["validation"] for line in (run / "metrics.jsonl").read_text().splitlines()
               if "validation" in line]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.15  # the adapters learned (plain LoRA: -0.23)
    saved = sorted(p.name for p in (run / "model").iterdir())
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved  # the base is not copied
    config = load_run_config(run)
    _, model, _ = load_trained(run, config)
    layer = {"nf4": bitsandbytes.nn.Linear4bit, "int8": bitsandbytes.nn.Linear8bitLt}[quantization]
    assert any(isinstance(m, layer) for m in model.modules())  # evaluation reads the base as it trained
    assert main(["generate", str(run), "--prompt", "a red dog"]) == 0
    assert capsys.readouterr().out.strip()
    exported = tmp_path / "exported"  # adapters merged into the full-precision base: loads without bitsandbytes
    assert main(["export", str(run), "--output", str(exported)]) == 0
    assert "quantization_config" not in json.loads((exported / "config.json").read_text())
    plain = AutoModelForCausalLM.from_pretrained(exported)
    assert not any(isinstance(m, layer) for m in plain.modules())


def test_qlora_resumes_bit_exact(tmp_path, tiny_chat_llama, monkeypatch):
    from safetensors.torch import load_file

    from tests.conftest import crash_after_checkpoint

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _qlora_run(tmp_path / "a", tiny_chat_llama, "nf4", "train.epochs=2", "train.batch_size=8", "train.save_every_steps=2")
    crash_after_checkpoint(monkeypatch, _qlora_args(tmp_path / "b", tiny_chat_llama, "nf4", "train.epochs=2",
                                                    "train.batch_size=8", "train.save_every_steps=2"))
    assert main(["train", "--resume", str(tmp_path / "b" / "run")]) == 0
    first = load_file(whole / "model" / "adapter_model.safetensors")
    second = load_file(tmp_path / "b" / "run" / "model" / "adapter_model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_gradients_reach_the_lowest_adapter_after_an_evaluation(tiny_chat_llama):
    """bitsandbytes repacks 4-bit layers for its AVX512-BF16 CPU kernel (no backward) at the first eval-mode
    forward; a training base must keep the plain layout, so every adapter gets a gradient after validation."""
    from peft import LoraConfig, get_peft_model

    from lmforge.models.quantization import prepare_for_adapters, quantized_loading
    from lmforge.tasks.generation import Generation, GenerationParams

    loading = quantized_loading("nf4", "fp32", torch.device("cpu"))
    model = prepare_for_adapters(Generation(GenerationParams()).build_model(str(tiny_chat_llama), True, False,
                                                                            None, loading))
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    tokens = torch.randint(3, 200, (2, 12))
    model.eval()
    with torch.no_grad():
        model(input_ids=tokens)  # validation
    model.train()
    model(input_ids=tokens, labels=tokens).loss.backward()
    lowest = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight  # A gets none while B is 0
    assert lowest.grad is not None and lowest.grad.abs().sum() > 0


@pytest.mark.parametrize(("overrides", "expected"), [
    (["model.quantization=nf4"], "train adapters on it with tuning.peft.method=lora"),
    (["model.quantization=nf4", "tuning.peft.method=lora", "model.device=meta"], "model.device"),
])
def test_quantization_mistakes_are_one_line(tmp_path, tiny_config, overrides, expected, capsys):
    assert main(["train", str(tiny_config), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_task_that_builds_its_own_model_refuses_quantization(tmp_path, tiny_bert, capsys):
    rows = tmp_path / "re.jsonl"
    rows.write_text(json.dumps({"text": "Ann met Bob", "head": [0, 3], "tail": [8, 11], "label": "knows"}) + "\n",
                    encoding="utf-8")
    assert main(["train", "task=relation-extraction", f"model={tiny_bert}", f"data.train={rows}",
                 "model.quantization=nf4", "tuning.peft.method=lora", f"train.output_dir={tmp_path / 'run'}"]) == 2
    assert "cannot load it quantised" in capsys.readouterr().err


def test_without_bitsandbytes_the_error_names_the_extra(tiny_config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes raises ImportError
    assert main(["train", str(tiny_config), "model.quantization=nf4", "tuning.peft.method=lora"]) == 2
    assert "pip install 'lmforge[qlora]'" in capsys.readouterr().err
    assert main(["train", str(tiny_config), "train.optimizer=adamw_8bit"]) == 2
    assert "pip install 'lmforge[qlora]'" in capsys.readouterr().err


def test_adamw_8bit_trains_on_cpu_like_adamw(tiny_config, tmp_path):
    accuracy = {}
    for optimizer in ("adamw", "adamw_8bit"):
        run = tmp_path / optimizer
        assert main(["train", str(tiny_config), f"train.optimizer={optimizer}", f"train.output_dir={run}",
                     "train.epochs=3"]) == 0
        report = json.loads((run / "report.json").read_text())
        accuracy[optimizer] = report["accuracy"]
        assert report["accuracy"] > report["majority_baseline"]["accuracy"], optimizer
    assert accuracy["adamw_8bit"] >= accuracy["adamw"] - 0.1, accuracy
