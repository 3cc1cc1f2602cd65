"""data.arrow: a training file read into a memory-mapped Arrow table, split by row numbers, tokenised
through datasets' cached map, batched lazily — the same rows and labels as the list path, a second run
tokenises nothing, the run directory records the source instead of a copy, and a changed source is
refused on --resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmforge.cli import main
from lmforge.data.arrow import ArrowRows, FeatureRows
from lmforge.data.params import DataParams
from lmforge.data.splits import read_splits
from tests.conftest import crash_after_checkpoint, make_sentences, write_jsonl


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_arrow_splits_hold_the_same_rows_as_the_list_path(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(300, seed=4))
    listed = read_splits(DataParams(train=str(train), arrow=False, test_fraction=0.1), seed=3)
    arrow = read_splits(DataParams(train=str(train), arrow=True, test_fraction=0.1), seed=3)
    assert isinstance(arrow.train, ArrowRows) and not isinstance(listed.train, ArrowRows)
    assert arrow.labels == listed.labels == ["neg", "pos"]
    for name in ("train", "validation", "test"):
        assert [(e.text, e.labels, e.where) for e in getattr(arrow, name)] == \
            [(e.text, e.labels, e.where) for e in getattr(listed, name)], name


def test_bad_rows_are_named_or_skipped_as_in_the_list_path(tmp_path):
    rows = make_sentences(20, seed=1)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]) + '{"text": "x"}\n' +
                    "".join(json.dumps(r) + "\n" for r in rows[5:]))
    from lmforge.errors import DataError

    with pytest.raises(DataError, match=r"train.jsonl, line 6: missing column 'label'"):
        read_splits(DataParams(train=str(path), arrow=True), seed=0)
    splits = read_splits(DataParams(train=str(path), arrow=True, on_error="skip"), seed=0)
    assert len(splits.skipped) == 1 and "line 6" in splits.skipped[0]
    assert len(splits.train) + len(splits.validation) == 20


def arrow_run(tiny_config, tmp_path, name: str, *extra: str) -> list[str]:
    return ["train", str(tiny_config), "data.arrow=true", f"train.output_dir={tmp_path / name}", *extra]


def test_an_arrow_run_trains_records_its_source_and_caches_tokenising(tiny_config, tmp_path, monkeypatch, capsys):
    import lmforge.data.arrow as arrow

    calls = {"map": 0}
    real = arrow.tokenised

    def counted(rows, encode_batch, features, key, num_proc=1):
        def counting(columns):
            calls["map"] += 1
            return encode_batch(columns)
        return real(rows, counting, features, key, num_proc)
    monkeypatch.setattr(arrow, "tokenised", counted)
    import lmforge.tasks.classification as classification

    monkeypatch.setattr(classification, "tokenised", counted)
    assert main(arrow_run(tiny_config, tmp_path, "first")) == 0
    first_calls = calls["map"]
    assert first_calls > 0
    data = tmp_path / "first" / "data"
    assert not (data / "train.jsonl").exists() and (data / "validation.jsonl").is_file()
    source = json.loads((data / "train.source.json").read_text())
    assert source["rows"] == len(np.load(data / "train.indices.npy")) == 400 and source["size"] > 0
    assert main(arrow_run(tiny_config, tmp_path, "second")) == 0
    assert calls["map"] == first_calls  # the same rows and tokenizer: read from the cache
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    assert report["accuracy"] == json.loads((tmp_path / "first" / "report.json").read_text())["accuracy"]


def test_an_arrow_run_resumes_bit_exact_and_refuses_a_changed_source(tiny_config, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    common = ["train.epochs=2", "train.save_every_steps=5"]
    assert main(arrow_run(tiny_config, tmp_path, "whole", *common)) == 0
    crash_after_checkpoint(monkeypatch, arrow_run(tiny_config, tmp_path, "split", *common))
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    whole, split = load_file(tmp_path / "whole" / "model" / "model.safetensors"), \
        load_file(tmp_path / "split" / "model" / "model.safetensors")
    assert all(whole[k].equal(split[k]) for k in whole)

    source = json.loads((tmp_path / "split" / "data" / "train.source.json").read_text())["path"]
    os.utime(source, ns=(0, 0))
    (tmp_path / "split" / "checkpoints" / "latest").write_text(
        sorted(p.name for p in (tmp_path / "split" / "checkpoints").glob("step-*"))[0] + "\n")
    assert main(["train", "--resume", str(tmp_path / "split")]) == 2




def test_arrow_features_equal_list_features(tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    from lmforge.tasks.classification import TextClassification, TextClassificationParams

    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(50, seed=2))
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    arrow = read_splits(DataParams(train=str(train), arrow=True, validation_fraction=0.0), seed=0)
    listed = read_splits(DataParams(train=str(train), arrow=False, validation_fraction=0.0), seed=0)
    task = TextClassification(TextClassificationParams(), arrow.labels)
    features = task.encode(arrow.train, tokenizer, 16)
    expected = task.encode(listed.train, tokenizer, 16)
    assert isinstance(features, FeatureRows)
    assert features.rows([3, 0, 7]) == [expected[3], expected[0], expected[7]]
    assert list(features.lengths) == [len(f["input_ids"]) for f in expected]
