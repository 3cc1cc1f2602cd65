"""Every malformed input gets one line with file:line; `on_error: skip` skips and counts instead."""

from __future__ import annotations

import pytest

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import infer_labels, read_examples
from lmforge.data.params import DataParams
from lmforge.data.splits import read_splits
from lmforge.errors import ConfigError, DataError


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CASES = [
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": "x", "label": \n', 2, "invalid JSON"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n["not", "an", "object"]\n', 2, "must be a JSON object"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"label": "b"}\n', 2, "missing column 'text'"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": "  ", "label": "b"}\n', 2, "empty text"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": "fine"}\n', 2, "missing column 'label'"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": "fine", "label": ""}\n', 2, "empty or invalid label"),
    ("bad.csv", 'text,label\nok,a\n"x,y,z",b,c\n', 3, "expected 2 columns"),
    ("bad.tsv", 'text\tlabel\nok\ta\n\tb\n', 3, "empty text"),
]


@pytest.mark.parametrize(("name", "content", "line", "problem"), CASES)
def test_malformed_row_names_file_and_line(tmp_path, name, content, line, problem):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as caught:
        read_examples(path, DataParams())
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}: ")
    assert problem in message and "data.on_error=skip" in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "content", "line", "problem"), CASES)
def test_skip_mode_skips_and_counts(tmp_path, name, content, line, problem):
    path = write(tmp_path, name, content)
    errors = RowErrors("skip")
    examples = read_examples(path, DataParams(on_error="skip"), errors=errors)
    assert [ex.text for ex in examples] == ["ok"]
    assert len(errors.skipped) == 1 and errors.skipped[0].startswith(f"{path}, line {line}: ")


def test_missing_csv_column_is_named_in_header_error(tmp_path):
    path = write(tmp_path, "rows.csv", "sentence,label\nhello,a\n")
    with pytest.raises(DataError, match=rf"{path}, line 1: no column 'text' in the header \(columns: sentence, label\); "
                                        "set data.text_column"):
        read_examples(path, DataParams())


def test_column_mapping(tmp_path):
    path = write(tmp_path, "rows.tsv", "label\tsentence\n1\tfine film\n0\tdull film\n")
    examples = read_examples(path, DataParams(text_column="sentence"))
    assert [(ex.text, ex.labels) for ex in examples] == [("fine film", ("1",)), ("dull film", ("0",))]
    assert examples[1].where == f"{path}, line 3"


def test_unknown_label_in_validation_names_line(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    validation = write(tmp_path, "val.jsonl", '{"text": "c", "label": "x"}\n{"text": "d", "label": "z"}\n')
    with pytest.raises(DataError, match=rf"{validation}, line 2: unknown label 'z' \(known: x, y\)"):
        read_splits(DataParams(train=str(train), validation=str(validation)), seed=0)


def test_explicit_label_list_rejects_others(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "w"}\n')
    with pytest.raises(DataError, match="line 2: unknown label 'w'"):
        read_splits(DataParams(train=str(train), labels=["x", "y"], validation_fraction=0), seed=0)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_examples(tmp_path / "none.jsonl", DataParams())
    path = write(tmp_path, "rows.xlsx", "")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_examples(path, DataParams())
    with pytest.raises(ConfigError, match="data.train is required"):
        read_splits(DataParams(), seed=0)


def test_single_label_set_is_rejected(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n')
    with pytest.raises(DataError, match="only one label"):
        read_splits(DataParams(train=str(train)), seed=0)


def test_numeric_labels_sort_as_numbers(tmp_path):
    path = write(tmp_path, "rows.jsonl", "".join(f'{{"text": "t", "label": {n}}}\n' for n in (10, 2, 1)))
    assert infer_labels(read_examples(path, DataParams())) == ["1", "2", "10"]


def test_multi_label_from_lists_and_separated_strings(tmp_path):
    jsonl = write(tmp_path, "rows.jsonl", '{"text": "t", "label": ["a", "b"]}\n{"text": "u", "label": []}\n')
    assert [ex.labels for ex in read_examples(jsonl, DataParams(), multi_label=True)] == [("a", "b"), ()]
    csv = write(tmp_path, "rows.csv", 'text,label\nt,"a, b"\n')
    assert read_examples(csv, DataParams(label_separator=","), multi_label=True)[0].labels == ("a", "b")


def test_package_paths_point_inside_installed_packages(tmp_path):
    from lmforge.data.readers import locate

    assert locate("package:lmforge/examples/demo.yaml").is_file()
    with pytest.raises(DataError, match="package 'no_such_pkg' is not installed"):
        locate("package:no_such_pkg/data.txt")
    (tmp_path / "x.jsonl").write_text("")
    assert locate(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    with pytest.raises(DataError, match="data file .* does not exist"):
        locate(tmp_path / "missing.jsonl")
