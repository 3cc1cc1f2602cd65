"""A resumed run reaches the same weights as an uninterrupted one, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import lmforge.train.loop as loop
from lmforge.cli import main


class Crash(Exception):
    pass


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model" / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].equal(second[name]), name


@pytest.mark.parametrize("extra", [[], ["train.gradient_accumulation_steps=3", "train.precision=bf16"]])
def test_resume_after_crash_is_bit_exact(tiny_config, tmp_path, monkeypatch, capsys, extra):
    common = ["train.epochs=3", "train.save_every_steps=7", "train.dropout=0.2", *extra]
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0

    real_save = loop.save_checkpoint
    calls = {"n": 0}

    def save_then_crash(*args, **kwargs):
        path = real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through epoch 2, after a mid-epoch checkpoint
            raise Crash
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'split'}", *common])
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_resume_after_kill_is_bit_exact(tiny_config, tmp_path):
    common = ["train.epochs=4", "train.save_every_steps=5", "train.batch_size=8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "lmforge.cli", "train"]
    subprocess.run([*command, str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common], check=True, env=env,
                   capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, str(tiny_config), f"train.output_dir={killed}", *common], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed / "checkpoints" / "step-00000075"  # inside epoch 2 of 4 (50 batches an epoch)
    deadline = time.time() + 120
    while not target.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert target.exists(), "the run ended before it could be killed"
    assert not (killed / "checkpoints" / "step-00000200").exists(), "the run finished before the kill"

    resumed = subprocess.run([*command, "--resume", str(killed)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "whole", killed)


def test_resume_refuses_overrides_and_runs_without_checkpoints(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "--resume", str(tmp_path)]) == 2
    assert "give no config file or overrides" in capsys.readouterr().err
    empty = tmp_path / "fresh"
    empty.mkdir()
    (empty / "config.yaml").write_text(Path(tiny_config).read_text())
    assert main(["train", "--resume", str(empty)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
