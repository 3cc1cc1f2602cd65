"""Seeded stratified splits; batch orders that are deterministic, complete and resumable."""

from __future__ import annotations

from collections import Counter

from lmforge.data.batching import BatchOrder, pad_batch
from lmforge.data.params import DataParams
from lmforge.data.splits import read_splits
from tests.conftest import make_sentences, write_jsonl


def test_stratified_split_is_seeded_and_keeps_label_shares(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i % 4 else "b"} for i in range(200)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    params = DataParams(train=str(path), validation_fraction=0.2, test_fraction=0.1)
    first, second = read_splits(params, seed=5), read_splits(params, seed=5)
    assert [ex.text for ex in first.validation] == [ex.text for ex in second.validation]
    assert (len(first.train), len(first.validation), len(first.test)) == (144, 36, 20)
    shares = Counter(ex.labels[0] for ex in first.validation)
    assert shares == {"a": 27, "b": 9}
    assert not {ex.text for ex in first.train} & {ex.text for ex in first.validation}


def test_max_train_samples_takes_the_first_rows(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", make_sentences(50))
    splits = read_splits(DataParams(train=str(path), max_train_samples=10, validation_fraction=0), seed=0)
    assert len(splits.train) == 10


def test_max_eval_samples_shortens_validation_only(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(20)])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": f"d{i}", "label": "ab"[i % 2]} for i in range(20)])
    splits = read_splits(DataParams(train=str(train), validation=str(dev), test=str(dev), max_eval_samples=5), seed=0)
    assert [ex.text for ex in splits.validation] == ["d0", "d1", "d2", "d3", "d4"]
    assert (len(splits.train), len(splits.test)) == (20, 20)


def test_batch_order_covers_everything_once_and_depends_on_epoch():
    lengths = [(i * 7) % 23 + 1 for i in range(101)]
    order = BatchOrder(lengths, batch_size=8, seed=3)
    order.set_epoch(0)
    epoch0 = list(order)
    assert sorted(i for b in epoch0 for i in b) == list(range(101))
    order.set_epoch(1)
    assert list(order) != epoch0
    order.set_epoch(0)
    assert list(order) == epoch0


def test_batch_order_skip_resumes_inside_an_epoch():
    order = BatchOrder(list(range(1, 60)), batch_size=4, seed=0)
    order.set_epoch(2)
    full = list(order)
    order.set_epoch(2, skip=5)
    assert list(order) == full[5:]


def test_length_grouping_reduces_padding():
    lengths = [1 + (i * 37) % 64 for i in range(512)]
    grouped, plain = BatchOrder(lengths, 16, seed=0), BatchOrder(lengths, 16, seed=0, group_by_length=False)

    def padding(order):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in order)

    assert padding(grouped) < padding(plain) / 4


def test_processes_take_disjoint_equal_shares():
    shards = [list(BatchOrder([5] * 50, 4, seed=0, process_index=p, num_processes=2)) for p in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1] for i in b}


def test_pad_batch_pads_to_longest():
    batch = pad_batch([{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": 1},
                       {"input_ids": [4], "attention_mask": [1], "labels": 0}], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_gzipped_files_and_packaged_datasets(tmp_path, monkeypatch):
    import gzip
    import json

    import pytest

    from lmforge.data.readers import locate, read_records
    from lmforge.errors import DataError

    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "a fine film", "label": "pos"}) + "\n")
    assert list(read_records(path)) == [(1, {"text": "a fine film", "label": "pos"})]
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="dataset:nope: unknown dataset; choose one of: chatterbot-topics"):
        locate("dataset:nope")
