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

from lmforge.cli import main
from tests.conftest import crash_after_checkpoint


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

    calls = {"n": 0}

    def third(state) -> bool:  # mid-way through epoch 2, after a mid-epoch checkpoint
        calls["n"] += 1
        return calls["n"] == 3
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={tmp_path / 'split'}", *common],
                           third)
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


def test_resume_refuses_overrides_and_restarts_a_run_killed_before_its_first_checkpoint(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "--resume", str(tmp_path)]) == 2
    assert "give no config file or overrides" in capsys.readouterr().err
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}"]) == 0
    early = tmp_path / "early"  # what a kill during epoch 1 leaves: marker, config, data, a cut log, a staging folder
    early.mkdir()
    (early / ".lmforge-run").write_text((tmp_path / "whole" / ".lmforge-run").read_text())
    (early / "config.yaml").write_text((tmp_path / "whole" / "config.yaml").read_text().replace(
        str(tmp_path / "whole"), str(early)))
    (early / "notes.txt").write_text("the user's own file")  # not lmforge's: a clean restart keeps it
    (early / "checkpoints" / "mine").mkdir(parents=True)
    (early / "metrics.jsonl").write_text('{"step": 20, "train_loss": 0.7}\n{"step": 40, "tra')
    (early / ".tmp-model-x1").mkdir()
    (early / "checkpoints" / ".tmp-abc").mkdir()
    capsys.readouterr()
    assert main(["train", "--resume", str(early)]) == 0
    assert "stopped before its first checkpoint; starting it again" in capsys.readouterr().err
    assert_same_weights(tmp_path / "whole", early)
    assert not list(early.rglob(".tmp-*"))
    assert (early / "notes.txt").read_text() == "the user's own file"


def test_resume_refuses_a_folder_lmforge_did_not_make_and_deletes_nothing(tiny_config, tmp_path, capsys):
    project = tmp_path / "project"  # a user's folder that happens to hold a config.yaml
    project.mkdir()
    (project / "config.yaml").write_text(tiny_config.read_text())
    (project / "notes.txt").write_text("notes")
    (project / "mydata.jsonl").write_text('{"text": "a", "label": "b"}\n')
    before = sorted(p.name for p in project.iterdir())
    assert main(["train", "--resume", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "not a run directory made by lmforge" in err and "Traceback" not in err, err
    assert sorted(p.name for p in project.iterdir()) == before


def test_resume_cleans_a_kill_mid_write_and_a_cut_log_line(tiny_config, tmp_path, monkeypatch, capsys):
    common = ["train.epochs=2", "train.save_every_steps=5"]
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0
    run = tmp_path / "run"
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={run}", *common])
    latest = (run / "checkpoints" / "latest").read_text().strip()
    (run / "checkpoints" / ".tmp-half").mkdir()  # a checkpoint cut short
    (run / "checkpoints" / ".tmp-half" / "model.safetensors").write_bytes(b"\0" * 100)
    os.replace(run / "model", run / ".old-model")  # killed between moving the old model aside and the new one in
    (run / ".tmp-model-y").mkdir()
    (run / ".tmp-metrics.jsonl.z.jsonl").write_text("{")
    with (run / "metrics.jsonl").open("a") as log:
        log.write('{"step": 999, "train_lo')
    assert main(["train", "--resume", str(run)]) == 0
    assert f"resuming from {run / 'checkpoints' / latest}" in capsys.readouterr().err
    assert not list(run.rglob(".tmp-*")) and not list(run.rglob(".old-*"))
    assert_same_weights(tmp_path / "whole", run)


def test_the_run_says_and_records_the_precision_it_chose(tiny_config, tmp_path, capsys):
    from lmforge.models.hardware import resolve

    assert main(["train", str(tiny_config), "train.epochs=1"]) == 0
    chosen = resolve("auto", "cpu")
    assert f"in {chosen.precision} ({chosen.reason})" in capsys.readouterr().err
    import json

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["precision"] == chosen.precision and report["precision_reason"].startswith("auto: ")


def test_fp16_trains_with_a_gradient_scaler_and_resumes_bit_exact(tiny_config, tmp_path, monkeypatch):
    common = ["train.epochs=2", "train.save_every_steps=7", "train.precision=fp16"]
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0
    scales = []

    def mid_epoch_2(state) -> bool:
        scales.append((state.grad_scaler or {}).get("scale"))
        return state.epoch == 1 and state.batches_done
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={tmp_path / 'split'}", *common],
                           mid_epoch_2)
    assert scales and all(scale and scale > 0 for scale in scales)  # the gradient scaler's state is checkpointed
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_resuming_a_finished_run_says_so_and_changes_nothing(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.epochs=1"]) == 0
    run = tmp_path / "run"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "finished training (1 of 1 epochs, 25 steps); nothing to resume" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_a_log_that_is_not_a_terminal_gets_progress_lines(tiny_config, capsys):
    assert main(["train", str(tiny_config), "train.epochs=1", "train.progress_every_seconds=0.000001"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("lmforge: epoch 1/1: batch ")]
    assert len(lines) >= 5 and "samples/s, ETA " in lines[-1] and ", loss " in lines[-1]


def test_a_lora_run_checkpoints_only_what_trains_and_resumes_bit_exact(tiny_config, tmp_path, monkeypatch):
    common = ["train.epochs=2", "train.save_every_steps=7", "tuning.peft.method=lora", "tuning.peft.r=4"]
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={tmp_path / 'split'}", *common])
    checkpoint = sorted((tmp_path / "split" / "checkpoints").glob("step-*"))[-1]
    saved = load_file(checkpoint / "trainable.safetensors")
    assert not (checkpoint / "model.safetensors").exists()
    assert saved and all("lora_" in name or "classifier" in name or "pooler" in name for name in saved)
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    whole, split = (load_file(tmp_path / name / "model" / "adapter_model.safetensors") for name in ("whole", "split"))
    assert whole.keys() == split.keys() and all(whole[k].equal(split[k]) for k in whole)
