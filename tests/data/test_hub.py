"""hf:namespace/name data paths: refused without data.allow_network, downloaded once through datasets and
read from the cache afterwards; a failed download is one line."""

from __future__ import annotations

import datasets
import pytest
from datasets import Dataset

from lmforge.cli import main
from lmforge.data.params import DataParams
from lmforge.data.splits import read_splits
from lmforge.errors import DataError
from tests.conftest import make_sentences

ROWS = make_sentences(60, seed=7)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))


def test_a_hub_dataset_needs_allow_network(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "data.train=hf:someone/reviews"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "downloads are off; set data.allow_network=true" in err
    assert not (tmp_path / "run").exists()


def test_a_hub_dataset_is_downloaded_once_and_read_from_the_cache(monkeypatch):
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return Dataset.from_list(ROWS)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    params = DataParams(train="hf:someone/reviews:plain@train", allow_network=True)
    first = read_splits(params, seed=0)
    second = read_splits(params.model_copy(update={"allow_network": False}), seed=0)  # cached: no network needed
    assert calls == [("someone/reviews", "plain", "train")]
    assert [e.text for e in first.train] == [e.text for e in second.train] and first.labels == ["neg", "pos"]


def test_a_failed_download_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/reviews' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"hf:someone/reviews: could not load it from the hub \(Couldn't reach"):
        read_splits(DataParams(train="hf:someone/reviews", allow_network=True), seed=0)
    with pytest.raises(DataError, match="write a hub dataset as hf:namespace/name"):
        read_splits(DataParams(train="hf:bad id!", allow_network=True), seed=0)
