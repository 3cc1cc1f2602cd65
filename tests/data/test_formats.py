"""The formats users bring — parquet, Arrow files and save_to_disk folders, .gz/.zst text, ShareGPT and
Alpaca chat rows — read like jsonl; broken ones are one error line."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from datasets import Dataset

from lmforge.cli import main
from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import read_generation
from lmforge.data.labelled import read_examples
from lmforge.data.params import DataParams
from tests.conftest import make_sentences, write_jsonl

ROWS = make_sentences(30, seed=5)


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


WRITERS = {
    "rows.parquet": lambda path: pq.write_table(pa.Table.from_pylist(ROWS), path),
    "folder": lambda path: Dataset.from_list(ROWS).save_to_disk(str(path)),
    "rows.arrow": lambda path: Dataset.from_list(ROWS).save_to_disk(str(path.parent / "tmp-ds")) or
    path.write_bytes(next((path.parent / "tmp-ds").glob("*.arrow")).read_bytes()),
    "rows.jsonl.gz": lambda path: path.write_bytes(gzip.compress(jsonl_bytes(ROWS))),
    "rows.jsonl.zst": lambda path: path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(ROWS))),
    "rows.csv.zst": lambda path: path.write_bytes(zstandard.ZstdCompressor().compress(
        ("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in ROWS)).encode())),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_format_reads_the_same_rows(tmp_path, name):
    path = tmp_path / name
    WRITERS[name](path)
    examples = read_examples(path, DataParams())
    assert [(e.text, e.labels) for e in examples] == [(r["text"], (r["label"],)) for r in ROWS]


def test_a_parquet_file_trains_end_to_end(tmp_path, tiny_bert, capsys):
    train = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(make_sentences(120, seed=2)), train)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"task: text-classification\nmodel: {tiny_bert}\n")
    assert main(["train", str(config), f"data.train={train}", f"train.output_dir={tmp_path / 'run'}",
                 "train.epochs=1", "train.tensorboard=false"]) == 0
    assert "120" not in capsys.readouterr().err or (tmp_path / "run" / "model").is_dir()


CHAT_ROWS = [
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "red dog"},
                       {"from": "gpt", "value": "chien rouge"}]},
    {"instruction": "Translate to French.", "input": "blue cat", "output": "chat bleu"},
    {"instruction": "Say hello.", "output": "bonjour"},
    {"messages": [{"role": "user", "content": "green dog"}, {"role": "assistant", "content": "chien vert"}]},
    {"source": "a cat", "target": "un chat"},
]


def test_sharegpt_alpaca_and_openai_rows_become_dialogues(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS)
    examples = read_generation(str(path), "source", "target", "messages", RowErrors(), labelled=True)
    assert [e.form for e in examples] == ["sharegpt", "alpaca", "alpaca", "openai", None]
    assert examples[0].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "red dog"}]
    assert examples[0].target == "chien rouge"
    assert examples[1].messages == [{"role": "user", "content": "Translate to French.\n\nblue cat"}]
    assert examples[2].messages == [{"role": "user", "content": "Say hello."}] and examples[2].target == "bonjour"


@pytest.mark.parametrize("streaming", [[], ["data.streaming=true", "data.max_eval_samples=100"]])
def test_a_training_run_names_the_chat_forms_it_read(tmp_path, tiny_chat_llama, capsys, streaming):
    train = write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS * 6)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"task: generation\nmodel: {tiny_chat_llama}\n")
    assert main(["train", str(config), f"data.train={train}", f"train.output_dir={tmp_path / 'run'}",
                 "train.epochs=1", "train.tensorboard=false", "data.validation_fraction=0.2", *streaming]) == 0
    line = [x for x in capsys.readouterr().err.splitlines() if "chat rows read as" in x][0]
    assert "sharegpt" in line and "alpaca" in line and "openai" in line


def bad_cases(tmp_path):
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    pq.write_table(pa.Table.from_pylist([{"sentence": "x", "label": "a"}] * 4), tmp_path / "schema.parquet")
    (tmp_path / "plain-folder").mkdir()
    (tmp_path / "dict").mkdir()
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "dict" / "train"))
    (tmp_path / "cut.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(ROWS))[:40])
    (tmp_path / "sharegpt.jsonl").write_text(json.dumps({"conversations": [{"from": "alien", "value": "x"}]}) + "\n")
    return [("corrupt.parquet", "not a readable parquet file"), ("schema.parquet", "missing column 'text'"),
            ("plain-folder", "is a folder"), ("dict", "point at one of its splits"),
            ("cut.jsonl.zst", "not a readable .zst file")]


def test_broken_files_are_one_error_line(tmp_path, tiny_bert, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"task: text-classification\nmodel: {tiny_bert}\n")
    for name, words in bad_cases(tmp_path):
        code = main(["train", str(config), f"data.train={tmp_path / name}", f"train.output_dir={tmp_path / 'run'}"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("error:") == 1 and words in err and "Traceback" not in err, (name, err)
        assert not (tmp_path / "run").exists()


def test_a_malformed_sharegpt_row_names_its_line_and_form(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CHAT_ROWS[0]) + "\n" + json.dumps({"conversations": [{"from": "alien", "value": "x"}]}))
    with pytest.raises(Exception, match=r"bad.jsonl, line 2: conversations turn 1 .*\(sharegpt chat row\)"):
        read_generation(str(path), "source", "target", "messages", RowErrors(), labelled=True)
