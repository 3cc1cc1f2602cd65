"""Hyper-parameter search: samplers, trial run directories, pruning, results and errors."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from lmforge.recipes.search import Dimension


def search_config(tiny_config, tmp_path, search: str):
    path = tmp_path / "search.yaml"
    path.write_text(tiny_config.read_text() + search, encoding="utf-8")
    return path


def test_grid_values_from_choices_and_steps():
    assert Dimension(choices=[16, 32]).grid() == [16, 32]
    assert Dimension(low=4, high=16, step=4).grid() == [4, 8, 12, 16]
    assert Dimension(low=0.1, high=0.3, step=0.1).grid() == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        Dimension(low=1e-5, high=1e-3, log=True).grid()


def test_random_search_runs_trials_as_run_directories(tiny_config, tmp_path, capsys):
    config = search_config(tiny_config, tmp_path, "search:\n  sampler: random\n  trials: 3\n  pruner: none\n"
                                                  "  space:\n    train.lr: {low: 1.0e-3, high: 5.0e-3, log: true}\n"
                                                  "    train.batch_size: {choices: [8, 16]}\n")
    out = tmp_path / "search"
    assert main(["search", str(config), f"train.output_dir={out}", "train.epochs=1"]) == 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in results] == [0, 1, 2] and all(r["state"] == "complete" for r in results)
    assert all(1e-3 <= r["train.lr"] <= 5e-3 and r["train.batch_size"] in (8, 16) for r in results)
    for r in results:  # each trial is an ordinary run with its values in its saved config
        saved = (out / f"trial-{r['trial']:03d}" / "config.yaml").read_text()
        assert f"batch_size: {r['train.batch_size']}" in saved and (out / f"trial-{r['trial']:03d}" / "report.json").is_file()
    best = json.loads((out / "best.json").read_text())
    assert best["accuracy"] == max(r["accuracy"] for r in results)
    assert (out / "search.png").stat().st_size > 0 and "| trial | state | accuracy |" in (out / "results.md").read_text()


def test_grid_search_tries_every_combination_and_prunes_a_hopeless_trial(tiny_config, tmp_path, capsys):
    config = search_config(tiny_config, tmp_path, "search:\n  sampler: grid\n  seed: 4\n"
                                                  "  space:\n    train.lr: {choices: [3.0e-3, 4.0e-3, 1.0e-9, 2.0e-9]}\n")
    out = tmp_path / "grid"
    assert main(["search", str(config), f"train.output_dir={out}", "train.epochs=3"]) == 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["train.lr"] for r in results) == [1e-9, 2e-9, 3e-3, 4e-3]
    # seed 4 orders the grid good, good, hopeless, hopeless; the median pruner judges once two trials finished
    assert [r["train.lr"] > 1e-6 for r in results] == [True, True, False, False]
    assert [r["state"] for r in results] == ["complete", "complete", "pruned", "pruned"]


def test_search_errors_are_one_line(tiny_config, tmp_path, capsys):
    bad_key = search_config(tiny_config, tmp_path, "search:\n  space:\n    train.lrate: {low: 1.0e-4, high: 1.0e-3}\n")
    assert main(["search", str(bad_key), f"train.output_dir={tmp_path / 'a'}"]) == 2
    assert "lrate" in capsys.readouterr().err
    no_range = search_config(tiny_config, tmp_path, "search:\n  sampler: grid\n  space:\n    train.lr: {low: 1.0e-4, high: 1.0e-3}\n")
    assert main(["search", str(no_range), f"train.output_dir={tmp_path / 'b'}"]) == 2
    assert "needs `step`" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["train", str(no_range), f"train.output_dir={tmp_path / 'c'}"]) == 2
    assert "has a search: section; run it with `lmforge search" in capsys.readouterr().err
    assert main(["search", str(tiny_config)]) == 2
    assert "no search: section" in capsys.readouterr().err


SEARCH_SPACE = ("search:\n  sampler: random\n  trials: 4\n  pruner: none\n"
                "  space:\n    train.lr: {low: 1.0e-3, high: 5.0e-3, log: true}\n")


def _results(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_killed_search_resumes_without_repeating_finished_trials(tiny_config, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    config, out = search_config(tiny_config, tmp_path, SEARCH_SPACE), tmp_path / "killed"
    command = [sys.executable, "-m", "lmforge.cli", "search"]
    process = subprocess.Popen([*command, str(config), f"train.output_dir={out}", "train.epochs=2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 180
    while not (out / "trial-002").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {r["trial"]: r for r in _results(out)}
    assert set(finished) == {0, 1} and all(r["state"] == "complete" for r in finished.values())
    stamps = {n: (out / f"trial-{n:03d}" / "report.json").stat().st_mtime for n in finished}
    resumed = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "2 of 4 trials finished" in resumed.stderr
    results = _results(out)
    assert [r["state"] for r in results].count("complete") == 4
    assert [r for r in results if r["trial"] == 2][0]["state"] == "failed"  # the trial the kill cut short
    assert {n: (out / f"trial-{n:03d}" / "report.json").stat().st_mtime for n in finished} == stamps  # not re-run
    best = json.loads((out / "best.json").read_text())
    assert best["accuracy"] == max(r["accuracy"] for r in results if r["accuracy"] is not None)
    assert f"best trial {best['trial']}" in resumed.stderr


def test_two_searches_share_one_study(tiny_config, tmp_path):
    import subprocess
    import sys

    config = search_config(tiny_config, tmp_path, SEARCH_SPACE)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "lmforge.cli", "search", str(config), f"search.storage={storage}",
               "search.study_name=shared", "train.epochs=1"]
    processes = [subprocess.Popen([*command, f"train.output_dir={tmp_path / name}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for process in processes:
        assert process.wait(300) == 0, process.stderr.read()
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.state.name for t in study.trials].count("COMPLETE") == 4
    dirs = sorted(p.name for name in ("a", "b") for p in (tmp_path / name).glob("trial-*"))
    assert dirs == ["trial-000", "trial-001", "trial-002", "trial-003"]  # each trial ran once, in one of them
    # each folder's results list the whole study as it stood when that search ended
    assert max(len(_results(tmp_path / "a")), len(_results(tmp_path / "b"))) == 4
    assert len({t.params["train.lr"] for t in study.trials}) == 4  # each search drew its own points


def test_workers_run_trials_side_by_side(tiny_config, tmp_path):
    config = search_config(tiny_config, tmp_path, SEARCH_SPACE.replace("trials: 4", "trials: 3") + "  workers: 2\n")
    out = tmp_path / "workers"
    assert main(["search", str(config), f"train.output_dir={out}", "train.epochs=1"]) == 0
    results = _results(out)
    assert [r["state"] for r in results] == ["complete"] * 3 and len({r["train.lr"] for r in results}) == 3
