"""train.optimizer, train.scheduler and train.gradient_checkpointing as a user sets them."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from lmforge.cli import main


def lrs(run) -> list[float]:
    return [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]


def test_a_cosine_schedule_and_adafactor_train(tiny_config, tmp_path):
    assert main(["train", str(tiny_config), "train.scheduler=cosine", "train.optimizer=adafactor",
                 "train.log_every_steps=1", "train.warmup_ratio=0.2"]) == 0
    rates = lrs(tmp_path / "run")
    peak = max(rates)
    assert rates.index(peak) < len(rates) // 3 and rates[-1] < 0.05 * peak  # warm-up, then a cosine down to ~0
    middle = rates[len(rates) * 2 // 3]
    assert 0.05 * peak < middle < peak  # not linear's straight line to zero at the same point


def test_gradient_checkpointing_gives_the_same_weights(tiny_config, tmp_path):
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'plain'}", "train.epochs=1",
                 "train.precision=fp32"]) == 0
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'checkpointed'}", "train.epochs=1",
                 "train.precision=fp32", "train.gradient_checkpointing=true"]) == 0
    plain = load_file(tmp_path / "plain" / "model" / "model.safetensors")
    checkpointed = load_file(tmp_path / "checkpointed" / "model" / "model.safetensors")
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-5) for k in plain)
