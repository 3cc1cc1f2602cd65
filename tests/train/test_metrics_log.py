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


def test_a_resume_keeps_the_tensorboard_events_up_to_its_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, tensorboard=True)
    for step in (10, 20):
        log.write({"step": step, "train_loss": 1.0 / step})
    log.write({"validation": {"step": 20, "accuracy": 0.5}})  # the epoch's end, then its checkpoint at step 20
    log.write({"step": 30, "train_loss": 0.9})  # lost with the kill: written again after the resume
    log.close()
    log = MetricsLog(tmp_path, tensorboard=True, resume_step=20)
    log.write({"step": 30, "train_loss": 0.03})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("validation/accuracy")] == [20]
    assert [(e.step, round(e.value, 2)) for e in events.Scalars("train/train_loss")] == [(10, 0.1), (20, 0.05), (30, 0.03)]


def test_eval_every_steps_scores_inside_epochs_and_plots_every_evaluation(tiny_config, tmp_path, capsys):
    from lmforge.cli import main

    run = tmp_path / "steps"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=1", "train.eval_every_steps=10",
                 "train.log_every_steps=2"]) == 0
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in entries if "validation" in e] == [10, 20, 25]  # 25 batches an epoch
    assert len([e for e in entries if "train_loss" in e]) == 12
    assert "epoch 1/1, step 10: train loss" in capsys.readouterr().err
    assert (run / "history.png").stat().st_size > 10_000


def test_a_run_that_stops_at_an_evaluation_step_is_scored_once_there(tiny_config, tmp_path):
    from lmforge.cli import main

    run = tmp_path / "stops"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.eval_every_steps=10",
                 "train.max_steps=20"]) == 0
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in entries if "validation" in e] == [10, 20]
