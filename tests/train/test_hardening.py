"""Training that meets trouble stops with one line and loses nothing: a loss that diverges, a full disk,
SIGTERM in the middle of a checkpoint write; files with a byte-order mark are read; lmforge cleans only what
it wrote (run directories, checkpoints, export targets, search folders)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.conftest import make_sentences, write_jsonl
from tests.train.test_resume import assert_same_weights

FOREIGN = "users-own-file.txt"


def one_error(err: str, words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip().startswith("error:")]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err, err


def test_a_diverging_loss_stops_with_one_line_naming_the_step_and_keeps_the_last_checkpoint(tiny_config, tmp_path,
                                                                                            capsys):
    run = tmp_path / "diverged"
    code = main(["train", str(tiny_config), f"train.output_dir={run}", "train.lr=1e30", "train.save_every_steps=1",
                 "train.max_grad_norm=null"])
    err = capsys.readouterr().err
    one_error(err, "the training loss became")
    assert code == 2 and "at step" in err and "train.lr" in err
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert f"({run / 'checkpoints' / latest})" in err  # the checkpoint kept is named
    assert not list(run.rglob(".tmp-*"))


def test_files_with_a_byte_order_mark_are_read(tiny_config, tmp_path, capsys):
    rows = make_sentences(40, seed=3)
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + write_jsonl(tmp_path / "plain.jsonl", rows).read_bytes())
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbftext,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows).encode())
    for data in (jsonl, csv):
        run = tmp_path / f"run-{data.suffix[1:]}"
        assert main(["train", str(tiny_config), f"data.train={data}", "data.validation=null", f"train.output_dir={run}",
                     "train.epochs=1"]) == 0, capsys.readouterr().err
        assert (run / "model" / "config.json").is_file()


def test_resume_says_where_it_resumes_from_once(tiny_config, tmp_path, monkeypatch, capsys):
    from tests.conftest import crash_after_checkpoint

    run = tmp_path / "run"
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={run}", "train.save_every_steps=3"])
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert capsys.readouterr().err.count("resuming from") == 1


def test_cleaning_touches_only_what_lmforge_wrote(tiny_config, tmp_path, monkeypatch, capsys):
    """Foreign files in every kind of folder lmforge cleans survive: a run restarted before its first
    checkpoint, its checkpoints (pruned to keep_checkpoints), a run whose input failed, an export target, a
    search folder whose study could not open."""
    from tests.conftest import crash_after_checkpoint

    run = tmp_path / "run"
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={run}",
                                         "train.save_every_steps=2", "train.keep_checkpoints=1"])
    for folder in (run, run / "checkpoints", run / "data"):
        (folder / FOREIGN).write_text("mine")
    (run / "checkpoints" / "step-notes").mkdir()  # looks like a checkpoint name, is not one
    assert main(["train", "--resume", str(run)]) == 0  # prunes checkpoints, cleans staging
    for folder in (run, run / "checkpoints", run / "data"):
        assert (folder / FOREIGN).read_text() == "mine", folder
    assert (run / "checkpoints" / "step-notes").is_dir()

    early = tmp_path / "early"  # killed before its first checkpoint, then restarted: only lmforge's entries go
    crash_after_checkpoint(monkeypatch, ["train", str(tiny_config), f"train.output_dir={early}"],
                           when=lambda state: True)
    shutil.rmtree(early / "checkpoints")
    (early / FOREIGN).write_text("mine")
    assert main(["train", "--resume", str(early)]) == 0
    assert (early / FOREIGN).read_text() == "mine"

    failed = tmp_path / "failed"  # an existing empty folder, given as output_dir; the input then fails
    failed.mkdir()
    assert main(["train", str(tiny_config), f"train.output_dir={failed}", "data.validation=/no/such/file.jsonl"]) == 2
    assert failed.is_dir() and not any(failed.iterdir()) or not failed.exists()

    target = tmp_path / "export"  # an export target holding the user's file is refused, and kept
    target.mkdir()
    (target / FOREIGN).write_text("mine")
    capsys.readouterr()
    assert main(["export", str(run), "--output", str(target)]) == 2
    one_error(capsys.readouterr().err, "not empty")
    assert (target / FOREIGN).read_text() == "mine"


def test_a_search_that_cannot_start_removes_only_its_own_files(tiny_config, tmp_path, capsys):
    pytest.importorskip("optuna")
    from lmforge.recipes.search import discard_search_dir

    out = tmp_path / "search"
    out.mkdir()
    for name in ("study.db", "search.yaml", ".lmforge-run", FOREIGN):
        (out / name).write_text("x")
    discard_search_dir(out)
    assert sorted(p.name for p in out.iterdir()) == [FOREIGN]
    (out / FOREIGN).unlink()
    for name in ("study.db", "search.yaml", ".lmforge-run"):
        (out / name).write_text("x")
    discard_search_dir(out)
    assert not out.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs (root on Linux with mount rights; skipped elsewhere)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk of `folder` to the last byte with one file; the file."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to fail on close
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
        except OSError:
            pass
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError:
            pass
    return filler


def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(tiny_config, tmp_path, small_disk,
                                                                         monkeypatch, capsys):
    import lmforge.train.loop as loop

    common = ["train.epochs=2", "train.save_every_steps=3", "train.keep_checkpoints=1"]
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0
    run = small_disk / "run"
    real_save, filler = loop.save_checkpoint, []

    def fill_after_first(run_dir, state, *args, **kwargs):
        path = real_save(run_dir, state, *args, **kwargs)
        if not filler:
            filler.append(fill(small_disk))  # the next write finds the disk full
        return path
    monkeypatch.setattr(loop, "save_checkpoint", fill_after_first)
    capsys.readouterr()
    code = main(["train", str(tiny_config), f"train.output_dir={run}", *common])
    err = capsys.readouterr().err
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert code == 2, err
    one_error(err, "no space left on the disk of")
    assert "free some space" in err and str(run) in err
    assert not list(run.rglob(".tmp-*"))
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert (run / "checkpoints" / latest / "state.json").is_file()

    code = main(["train", "--resume", str(run)])  # still full: the same one line
    err = capsys.readouterr().err
    assert code == 2, err
    one_error(err, "no space left")
    filler[0].unlink()
    assert main(["train", "--resume", str(run)]) == 0, capsys.readouterr().err
    assert_same_weights(tmp_path / "whole", run)


#: `lmforge ARGV` whose checkpoint writes take 0.4 s longer (the weights written after a pause): time to signal it
SLOW_CHECKPOINTS = """
import sys, time
import lmforge.train.checkpoint as checkpoint
real = checkpoint._save_weights
def slow(model, folder):
    time.sleep(0.4)
    real(model, folder)
checkpoint._save_weights = slow
from lmforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_a_checkpoint_write_is_one_line_exit_143_and_resumes_bit_exact(tiny_config, tmp_path):
    common = ["train.epochs=2", "train.save_every_steps=4", "train.batch_size=8"]
    command = [sys.executable, "-m", "lmforge.cli", "train"]
    subprocess.run([*command, str(tiny_config), f"train.output_dir={tmp_path / 'whole'}", *common], check=True,
                   capture_output=True)
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", SLOW_CHECKPOINTS, "train", str(tiny_config),
                                f"train.output_dir={run}", *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:  # the second checkpoint is being written
        if (run / "checkpoints" / "latest").is_file() and list((run / "checkpoints").glob(".tmp-*")):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("terminated") and "Traceback" not in err, err
    assert not list(run.rglob(".tmp-*"))
    assert not (run / "model").exists() or (run / "model" / "config.json").is_file()
    resumed = subprocess.run([*command, "--resume", str(run)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "whole", run)
