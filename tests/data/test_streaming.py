"""data.streaming: the training file read as it is needed — rows counted once, a seeded shuffle buffer per epoch,
batches tokenised as drawn, the run directory recording the source, and a resume mid-epoch bit-exact."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.data.params import DataParams
from lmforge.data.splits import read_splits
from lmforge.data.streaming import StreamedRows, shuffled
from lmforge.errors import ConfigError
from tests.conftest import crash_after_checkpoint, make_sentences, write_jsonl


def test_the_shuffle_buffer_is_a_seeded_permutation_per_epoch():
    items = list(range(1000))
    first = list(shuffled(items, 64, seed=1, epoch=0))
    assert sorted(first) == items and first != items
    assert first == list(shuffled(items, 64, seed=1, epoch=0))
    assert first != list(shuffled(items, 64, seed=1, epoch=1))
    assert sorted(shuffled(items[:5], 64, seed=1, epoch=0)) == items[:5]  # fewer items than the buffer


def test_a_buffer_of_one_keeps_the_file_order():
    assert list(shuffled(range(20), 1, seed=3, epoch=2)) == list(range(20))


def test_streamed_splits_route_every_row_once_and_collect_labels(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(300, seed=4))
    splits = read_splits(DataParams(train=str(train), streaming=True, max_eval_samples=1000), seed=3)
    assert isinstance(splits.train, StreamedRows) and splits.labels == ["neg", "pos"]
    rows = list(splits.train)
    assert len(rows) == len(splits.train) and len(rows) + len(splits.validation) == 300
    assert 10 < len(splits.validation) < 60  # a tenth, drawn per row
    seen = {e.where for e in rows} | {e.where for e in splits.validation}
    assert len(seen) == 300
    again = read_splits(DataParams(train=str(train), streaming=True, max_eval_samples=1000), seed=3)
    assert [e.where for e in again.validation] == [e.where for e in splits.validation]
    epoch = list(splits.train.epoch(seed=3, epoch=0))
    assert sorted(e.where for e in epoch) == sorted(e.where for e in rows) and epoch != rows


def test_streaming_refuses_what_it_cannot_hold_or_read(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(30, seed=4))
    with pytest.raises(ConfigError, match="data.max_eval_samples"):
        read_splits(DataParams(train=str(train), streaming=True), seed=0)
    with pytest.raises(ConfigError, match="data.test as a file"):
        read_splits(DataParams(train=str(train), streaming=True, validation_fraction=0, test_fraction=0.1), seed=0)
    with pytest.raises(ConfigError, match="train_extra"):
        read_splits(DataParams(train=str(train), streaming=True, validation_fraction=0, train_extra=[str(train)]), seed=0)


def stream_run(tiny_config, tmp_path, name: str, *extra: str) -> list[str]:
    return ["train", str(tiny_config), "data.streaming=true", "data.shuffle_buffer=64",
            f"train.output_dir={tmp_path / name}", *extra]


def test_a_streamed_run_trains_and_records_its_source(tiny_config, tmp_path, capsys):
    assert main(stream_run(tiny_config, tmp_path, "run")) == 0
    data = tmp_path / "run" / "data"
    assert not (data / "train.jsonl").exists() and (data / "validation.jsonl").is_file()
    source = json.loads((data / "train.source.json").read_text())
    assert source["rows"] == 400 and source["streaming"] is True and source["size"] > 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["epochs_run"] == 2 and report["split"] == "validation"
    assert "400 train / 40 validation" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["train.gradient_accumulation_steps=2"], ["train.max_steps=17", "train.epochs=3"]])
def test_a_streamed_run_resumes_bit_exact(tiny_config, tmp_path, monkeypatch, capsys, extra):
    common = ["train.epochs=2", "train.save_every_steps=5", *extra]
    assert main(stream_run(tiny_config, tmp_path, "whole", *common)) == 0
    crash_after_checkpoint(monkeypatch, stream_run(tiny_config, tmp_path, "split", *common),
                           lambda state: state.batches_done and state.global_step >= 10)  # mid-epoch
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    whole, split = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("whole", "split"))
    assert all(whole[k].equal(split[k]) for k in whole)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    said = capsys.readouterr().err
    assert "finished training" in said and ("17 steps" in said) == ("train.max_steps=17" in extra)


def test_tasks_that_read_whole_files_refuse_streaming(tmp_path):
    from lmforge.tasks.token_classification import TokenClassification, TokenClassificationParams

    train = tmp_path / "train.conll"
    train.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n", encoding="utf-8")
    task = TokenClassification(TokenClassificationParams())
    with pytest.raises(ConfigError, match="data.streaming works for text-classification"):
        task.read_splits(DataParams(train=str(train), streaming=True, validation_fraction=0), seed=0)
