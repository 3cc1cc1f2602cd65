"""`accelerate launch` with two processes on a machine without a GPU (gloo): one run directory made and
written by the main process, each process training on its half of every epoch, a model that learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from transformers import AutoModelForSequenceClassification


def launch_two(train_args: list[str]) -> subprocess.CompletedProcess:
    """`lmforge train ARGS` under `accelerate launch` with two processes."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "lmforge.cli", "train", *train_args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_train_one_run(tiny_config, tmp_path):
    finished = launch_two([str(tiny_config), "train.epochs=8"])
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (finished.stdout + finished.stderr).count("run directory") == 1  # the main process speaks for both
    run = tmp_path / "run"
    epochs = [json.loads(line)["validation"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if line.startswith('{"validation"')]
    assert [e["step"] for e in epochs[:2]] == [12, 24]  # 25 batches of 16 an epoch, shared by the two processes
    assert json.loads((run / "report.json").read_text())["accuracy"] >= 0.9
    AutoModelForSequenceClassification.from_pretrained(run / "model")


def test_a_strategy_network_refuses_several_processes(tiny_chat_llama, tmp_path):
    from tests.tuning.test_strategy_network import strategy_config

    finished = launch_two([strategy_config(tmp_path, tiny_chat_llama)])
    assert finished.returncode != 0
    lines = finished.stderr.splitlines()  # each rank's one line, whichever rank writes first
    assert any(line.startswith("error: tuning.strategy_network trains in one process (2 were launched") for line in lines)
    assert not (tmp_path / "run").exists()


def test_accelerate_launch_cpu_with_two_processes_is_refused_not_run_as_one(tiny_config, tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lmforge.cli", "train", str(tiny_config)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode != 0
    errors = [line for line in finished.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--multi_gpu --num_processes 2" in errors[0]
    assert "lmforge/" not in finished.stderr  # no lmforge traceback (accelerate reports its child's exit its own way)
    assert not (tmp_path / "run").exists()


def test_the_launch_check_reads_the_launchers_command_line(monkeypatch):
    import pytest

    from lmforge.errors import ConfigError
    from lmforge.train.processes import check_launch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_launch(["python", "-m", "lmforge.cli", "train", "cfg.yaml"])
    check_launch(["accelerate", "launch", "--num_processes", "1", "-m", "lmforge.cli"])
    with pytest.raises(ConfigError, match="--num_processes 4 was asked for"):
        check_launch(["/venv/bin/accelerate", "launch", "--cpu", "--num_processes=4", "-m", "lmforge.cli"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_launch(["accelerate", "launch", "--multi_gpu", "--num_processes", "2"])
