"""train.tracking: mlflow logs the run's parameters and metrics to a local SQLite store beside the run
directories (no server), and a resumed run goes on logging into the same MLflow run."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from tests.conftest import crash_after_checkpoint

mlflow = pytest.importorskip("mlflow")


def test_mlflow_records_params_and_metrics_and_resume_continues_the_run(tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), "train.tracking=mlflow", "train.save_every_steps=5",
                                         "train.log_every_steps=2"])
    first_id = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "tracking.json").read_text())["mlflow"] == first_id

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    found = client.get_run(first_id)
    assert found.data.params["train.lr"] == "0.003" and found.data.params["task.name"] == "text-classification"
    assert "train/train_loss" in found.data.metrics and "validation/accuracy" in found.data.metrics
    epochs = client.get_metric_history(first_id, "validation/accuracy")
    assert len(epochs) == 2  # epoch 1 before the crash, epoch 2 after the resume: one run
    assert found.info.status == "FINISHED"


def test_a_tracker_that_is_not_installed_is_one_line(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.tracking=wandb"]) == 2
    err = capsys.readouterr().err
    assert "train.tracking wandb: the wandb package is not installed" in err and not (tmp_path / "run").exists()
