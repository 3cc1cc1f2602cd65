"""The train → evaluate → predict path through the CLI on a tiny model, and its exit codes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from lmforge.cli import main
from tests.conftest import write_jsonl


@pytest.fixture
def trained_run(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.epochs=3"]) == 0
    capsys.readouterr()
    return tmp_path / "run"


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "metrics.jsonl", "report.json", "report.md", "confusion_matrix.png", "history.png",
                 "model/config.json", "model/model.safetensors", "data/train.jsonl", "checkpoints/latest"):
        assert (trained_run / name).exists(), name
    report = json.loads((trained_run / "report.json").read_text())
    assert report["split"] == "validation" and report["count"] == 40
    assert report["accuracy"] > report["majority_baseline"]["accuracy"]
    assert set(report["per_class"]) == {"neg", "pos"}
    entries = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["validation"]["epoch"] for e in entries if "validation" in e] == [1, 2, 3]


def test_saved_model_loads_with_plain_transformers(trained_run):
    folder = trained_run / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    assert classify("the film was superb")[0]["label"] in {"neg", "pos"}
    with torch.no_grad():
        logits = model(**tokenizer(["awful plot", "lovely story"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2)


def test_predict_writes_labels_with_probabilities(trained_run, tmp_path, capsys):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "the plot was superb"}, {"text": "awful and boring film"}])
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(trained_run), "--input", str(inputs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the plot was superb", "awful and boring film"]
    for row in rows:
        assert set(row) == {"text", "label", "probabilities"}
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_reads_stdin_json_or_plain_text(trained_run, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "great film"}\nawful film\n'))
    assert main(["predict", str(trained_run), "--input", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["great film", "awful film"]


def test_evaluate_on_any_labelled_file(trained_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "extra.jsonl", [{"text": "superb film", "label": "pos"}, {"text": "dull film", "label": "neg"}])
    assert main(["evaluate", str(trained_run), "--data", str(data)]) == 0
    assert "accuracy" in capsys.readouterr().out
    report = json.loads((trained_run / "evaluations" / "extra" / "report.json").read_text())
    assert report["count"] == 2 and "majority_baseline" in report
    assert main(["evaluate", str(trained_run)]) == 0  # its own validation split


def test_existing_run_directory_is_never_overwritten(trained_run, tiny_config, capsys):
    before = (trained_run / "model" / "model.safetensors").read_bytes()
    assert main(["train", str(tiny_config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run directory {trained_run} already exists") and "--resume" in err
    assert (trained_run / "model" / "model.safetensors").read_bytes() == before


BAD_INVOCATIONS = [
    (["train", "{cfg}", "trian.lr=1"], "unknown key 'trian'"),
    (["train", "{cfg}", "train.lr=-1"], "train.lr must be greater than 0"),
    (["train", "{tmp}/missing.yaml"], "does not exist"),
    (["train"], "give a config file"),
    (["train", "{cfg}", "model.name=no-such-model"], "is neither a local directory nor a packaged alias"),
    (["train", "{cfg}", "data.train={tmp}/none.jsonl"], "does not exist"),
    (["train", "{cfg}", "data.text_column=sentence"], "missing column 'sentence'"),
    (["train", "{cfg}", "train.metric=bleu"], "train.metric 'bleu' is not a validation metric of text-classification"),
    (["train", "{cfg}", "train.metric=macro-f1"], "(did you mean 'macro_f1'?)"),
    (["train", "--resume", "{tmp}/nowhere"], "does not exist"),
    (["evaluate", "{tmp}"], "not an lmforge run directory"),
    (["predict", "{tmp}/nowhere", "--input", "-"], "does not exist"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INVOCATIONS)
def test_user_mistakes_exit_2_with_one_line(argv, expected, tiny_config, tmp_path, capsys):
    argv = [a.format(cfg=tiny_config, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0] and err.rstrip().endswith(errors[0])
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists(), "a failed start must not leave a run directory behind"


def test_help_and_no_verb(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["train", "--help"])
    assert caught.value.code == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["models"]) == 0


def test_early_stopping_is_reported(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.epochs=5", "train.lr=1e-12", "train.patience=1"]) == 0
    assert "stopping early" in capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["stopped_early"] is True and report["epochs_run"] == 2 and report["best_epoch"] == 1


def test_dropout_override_is_saved(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.epochs=1", "train.dropout=0.3"]) == 0
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.3 and config["attention_probs_dropout_prob"] == 0.3


def test_skipped_rows_are_counted(tiny_config, tmp_path, sentiment_files, capsys):
    with sentiment_files["train"].open("a") as handle:
        handle.write('{"text": "", "label": "pos"}\nnot json\n')
    assert main(["train", str(tiny_config), "train.epochs=1", "data.on_error=skip"]) == 0
    assert "skipped 2 malformed rows" in capsys.readouterr().err


def test_overrides_may_follow_options(tiny_config, tmp_path, capsys):
    out = tmp_path / "before"
    assert main(["evaluate", str(tiny_config), "--output", str(out), "data.max_eval_samples=8"]) == 0
    assert json.loads((out / "report.json").read_text())["count"] == 8


def test_the_final_report_reuses_the_best_validation_scores(tiny_config, tmp_path, monkeypatch):
    import lmforge.recipes.finetune as finetune

    def scored_again(*args, **kwargs):
        raise AssertionError("the validation split was scored a second time")
    monkeypatch.setattr(finetune, "predict_examples", scored_again)
    run = tmp_path / "reuse"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=2"]) == 0
    report = json.loads((run / "report.json").read_text())
    epochs = [json.loads(line)["validation"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if line.startswith('{"validation"')]
    best = epochs[report["best_epoch"] - 1]
    assert report["split"] == "validation" and report["accuracy"] == best["accuracy"]
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 40


def test_every_fix_an_error_suggests_can_be_typed_on_that_verb(trained_run, tmp_path, capsys):
    """predict/evaluate of a run take data.* overrides (how the files given are read); generate/serve take
    --allow-network for a hub id — the fixes their errors name."""
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\na lovely plot\tpos\nterrible actors\tneg\n", encoding="utf-8")
    assert main(["predict", str(trained_run), "--input", str(other)]) == 2
    assert "data.text_column" in capsys.readouterr().err
    assert main(["predict", str(trained_run), "--input", str(other), "data.text_column=sentence"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["evaluate", str(trained_run), "--data", str(other), "data.text_column=sentence"]) == 0
    assert main(["evaluate", str(trained_run), "train.lr=1"]) == 2
    assert "data.* overrides only" in capsys.readouterr().err
    assert main(["generate", "someone/some-model", "--prompt", "hi"]) == 2
    assert "--allow-network on generate and serve" in capsys.readouterr().err
