"""Tuning strategies: freezing switches, PEFT adapters through the CLI, merged export loading in plain transformers."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.config import load_config, validate_config
from lmforge.methods.freezing import freeze, parameter_counts, transformer_layers
from lmforge.methods.registry import TuningParams
from lmforge.runs.schema import RunConfig


def classifier(tiny_bert):
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_freeze_bottom_layers_and_embeddings(tiny_bert):
    model = classifier(tiny_bert)
    freeze(model, TuningParams(freeze_layers=1, freeze_embeddings=True))
    names = trainable_names(model)
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in names)
    assert any(n.startswith("bert.encoder.layer.1.") for n in names) and "classifier.weight" in names
    assert len(transformer_layers(model.bert)) == 2


def test_train_only_head(tiny_bert):
    model = classifier(tiny_bert)
    freeze(model, TuningParams(train_only_head=True))
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}
    trainable, total = parameter_counts(model)
    assert trainable == model.classifier.weight.numel() + 2 and total > 10 * trainable


def test_too_many_frozen_layers_and_peft_with_freezing_are_config_errors(tiny_bert, tiny_config, capsys):
    assert main(["train", str(tiny_config), "tuning.freeze_layers=5"]) == 2
    assert "tuning.freeze_layers is 5 but the model has 2 layers" in capsys.readouterr().err
    with pytest.raises(Exception, match="peft already freezes"):
        validate_config(RunConfig, load_config(tiny_config, ["tuning.freeze_layers=1", "tuning.peft.method=lora"]))


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prompt", "prefix"])
def test_peft_run_trains_the_adapter_and_head_only_and_reloads(method, tiny_config, tmp_path, capsys):
    run = tmp_path / f"run-{method}"
    virtual = ["tuning.peft.num_virtual_tokens=4"] if method in ("prompt", "prefix") else []
    assert main(["train", str(tiny_config), f"train.output_dir={run}", f"tuning.peft.method={method}", "train.epochs=1",
                 *virtual]) == 0
    err = capsys.readouterr().err
    trained = int(err.split("lmforge: training ")[1].split(" of ")[0].replace(",", ""))
    report = json.loads((run / "report.json").read_text())
    assert report["trainable_parameters"] == trained < report["total_parameters"] / 3
    assert (run / "model" / "adapter_model.safetensors").is_file() and (run / "model" / "head" / "config.json").is_file()
    assert not (run / "model" / "model.safetensors").exists()
    assert main(["evaluate", str(run)]) == 0  # reloads base + adapter + head: same scores as at the end of training
    again = json.loads((run / "evaluations" / "validation" / "report.json").read_text())
    assert again["accuracy"] == pytest.approx(report["accuracy"])


def test_lora_export_merges_into_a_plain_transformers_model(tiny_config, tmp_path):
    run, out = tmp_path / "run", tmp_path / "exported"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "tuning.peft.method=lora", "tuning.peft.r=4",
                 "train.epochs=1", "train.lr=1e-2"]) == 0
    assert main(["export", str(run), "--output", str(out)]) == 0
    plain = AutoModelForSequenceClassification.from_pretrained(out)  # no peft involved
    tokenizer = AutoTokenizer.from_pretrained(out)
    from lmforge.runs.load import load_trained
    from lmforge.runs.run_dir import load_run_config

    _, adapted, _ = load_trained(run, load_run_config(run))
    batch = tokenizer(["the film was good", "a dull story"], return_tensors="pt", padding=True)
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, adapted(**batch).logits, atol=1e-5)
    assert main(["export", str(run), "--output", str(out)]) == 2  # never over an existing folder


def test_prompt_tuning_cannot_be_merged(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "tuning.peft.method=prompt", "train.epochs=1",
                 "tuning.peft.num_virtual_tokens=4"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 2
    assert "cannot be merged" in capsys.readouterr().err


def test_a_knob_of_another_peft_method_is_one_line(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "tuning.peft.method=ia3", "tuning.peft.r=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "r does not apply to method 'ia3' (it reads target_modules)" in err
    assert not (tmp_path / "run").exists()
