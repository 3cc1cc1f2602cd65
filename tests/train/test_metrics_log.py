"""metrics.jsonl survives a resume without duplicated steps; TensorBoard files are written when asked."""

from __future__ import annotations

import json

from lmforge.train.metrics_log import MetricsLog


def test_resume_drops_entries_past_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for step in (10, 20, 30):
        log.write({"step": step, "train_loss": 1.0 / step})
    log.write({"validation": {"step": 30, "epoch": 1, "accuracy": 0.5}})
    log.write({"step": 40, "train_loss": 0.01})
    log.close()
    MetricsLog(tmp_path, tensorboard=False, resume_step=30).close()
    steps = [json.loads(line).get("step", 30) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 30]


def test_tensorboard_events_are_written(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=True)
    log.write({"step": 1, "train_loss": 0.5})
    log.write({"validation": {"step": 1, "accuracy": 0.75}})
    log.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
