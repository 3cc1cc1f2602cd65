"""Train/validation/test splits from files, or a seeded stratified split of the training file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lmforge.data.arrow import ArrowRows, build_table, file_stamp, use_arrow
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import (
    TextExample,
    check_labels,
    infer_labels,
    iter_examples,
    read_examples,
    sort_labels,
    text_rows,
)
from lmforge.data.params import DataFile, DataParams, file_params
from lmforge.data.readers import locate
from lmforge.data.streaming import Iterate, stream_splits
from lmforge.errors import ConfigError, DataError

T = TypeVar("T")


@dataclass
class Splits:
    """The examples of each split (whatever type the task reads) and the label set."""

    train: list
    validation: list
    test: list
    labels: list[str]
    skipped: list[str] = field(default_factory=list)


def split_indices(count: int, fraction: float, seed: int, keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row numbers: a seeded split of `fraction`, stratified on `keys` only when every
    class has at least two rows, else at random. (scikit-learn is imported here: ~100 MB a server never needs.)"""
    from sklearn.model_selection import train_test_split

    everything = np.arange(count)
    if fraction <= 0 or count < 2:
        return everything, np.arange(0)
    if keys is not None:
        _, counts = np.unique(keys, return_counts=True)
        keys = keys if counts.min() >= 2 else None
    try:
        kept, held = train_test_split(everything, test_size=fraction, random_state=seed, stratify=keys)
    except ValueError:  # too few rows per class for the requested share
        kept, held = train_test_split(everything, test_size=fraction, random_state=seed)
    return np.asarray(kept), np.asarray(held)


def split_off(examples: list[T], fraction: float, seed: int,
              key: Callable[[T], str] | None = None) -> tuple[list[T], list[T]]:
    """(kept, held out): a seeded split of `fraction` of the examples, stratified on `key` when given."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    keys = np.asarray([key(ex) for ex in examples]) if key else None
    kept, held = split_indices(len(examples), fraction, seed, keys)
    return [examples[i] for i in kept], [examples[i] for i in held]


def assemble_splits(read: Callable[[str, DataParams, RowErrors], list[T]], data: DataParams, seed: int, expected: str,
                    key: Callable[[T], str] | None = None,
                    after_train: Callable[[list[T]], list[str]] | None = None,
                    iterate: Iterate | None = None) -> Splits:
    """Each split read from its file with `read(path, params, errors)`, or split off train.

    `after_train(train)` runs before the other files are read and returns the label set (a task infers
    it there); `expected` describes the training file in the error raised when data.train is missing.
    `iterate(path, params, errors)`, reading a file lazily, lets the task stream (data.streaming)."""
    if data.train is None:
        raise ConfigError(f"data.train is required: {expected}")
    if data.streaming:
        if iterate is None or after_train is not None:
            raise ConfigError("data.streaming works for text-classification (and prompt-classification, relevance-"
                              "scoring), generation and language-modeling; set data.streaming=false for this task")
        return Splits(*stream_splits(iterate, data, seed, expected))
    errors = RowErrors(data.on_error)

    def load(spec: str | DataFile | None) -> list[T] | None:
        return None if spec is None else read(*file_params(spec, data), errors)

    train = load(data.train)[: data.max_train_samples]
    if not train:
        raise DataError(f"{file_params(data.train, data)[0]}: no usable rows ({expected})")
    labels = after_train(train) if after_train is not None else []
    validation, test = load(data.validation), load(data.test)
    if test is None:
        train, test = split_off(train, data.test_fraction, seed, key)
    if validation is None:
        train, validation = split_off(train, data.validation_fraction, seed, key)
    for spec in data.train_extra:
        train = train + load(spec)
    return Splits(train=train, validation=validation[: data.max_eval_samples], test=test, labels=labels, skipped=errors.skipped)


def _label_key(example: TextExample) -> str:
    return "|".join(example.labels)


def read_splits(params: DataParams, seed: int, multi_label: bool = False) -> Splits:
    """Labelled text splits: the label set is data.labels or inferred from train, and rows of the other
    files (or of train, when data.labels is given) with other labels are reported. A large training file
    (data.arrow) is read into a memory-mapped Arrow table instead of a list."""
    if params.train is not None and params.streaming:
        return read_streamed_splits(params, seed, multi_label)
    if params.train is not None:
        path = locate(file_params(params.train, params)[0])
        if use_arrow(params.arrow, path, params.arrow_min_mb):
            return read_arrow_splits(params, path, seed, multi_label)
    labels: list[str] = list(params.labels or [])

    def read(path: str, own: DataParams, errors: RowErrors) -> list[TextExample]:
        examples = read_examples(path, own, multi_label, errors)
        return check_labels(examples, labels, errors) if labels else examples

    def set_labels(train: list[TextExample]) -> list[str]:
        labels.extend([] if labels else infer_labels(train))
        _enough_labels(file_params(params.train, params)[0], labels, multi_label)
        return labels

    return assemble_splits(read, params, seed, "the path of a .jsonl, .csv or .tsv training file", _label_key, set_labels)


def _enough_labels(path: str, labels: list[str], multi_label: bool) -> None:
    if not multi_label and len(labels) < 2:
        raise DataError(f"{path}: found only one label ({labels[0] if labels else 'none'}); classification needs at "
                        "least two (set data.labels or check data.label_column)")


def read_streamed_splits(params: DataParams, seed: int, multi_label: bool) -> Splits:
    """Labelled splits whose training rows are read from their file as needed (`data.streaming`); the label set is
    data.labels (rows with others reported) or every label the counting pass met."""
    known = list(params.labels or [])

    def iterate(path: str, own: DataParams, errors: RowErrors) -> Iterator[TextExample]:
        examples = iter_examples(path, own, multi_label, errors)
        return (ex for ex in examples if not known or check_labels([ex], known, errors))

    train, validation, test, labels, skipped = stream_splits(
        iterate, params, seed, "the path of a .jsonl, .csv, .tsv or .parquet training file",
        labels_of=lambda ex: ex.labels, check=check_labels)
    _enough_labels(file_params(params.train, params)[0], labels, multi_label)
    return Splits(train=train, validation=validation, test=test, labels=labels, skipped=skipped)


def _text_example(path: str) -> Callable[[dict], TextExample]:
    def make(row: dict) -> TextExample:
        return TextExample(row["text"], row["text_pair"], tuple(row["labels"]), f"{path}, line {row['line']}")
    return make


def _stratify_codes(labels) -> np.ndarray:
    """Each row's stratification key ("|".join of its labels, as `_label_key`) as an integer code that sorts
    as the key does, so a split by codes picks the rows a split by the keys would."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(pc.binary_join(labels, "|")).combine_chunks()
    rank = np.argsort(np.argsort(np.asarray(encoded.dictionary.to_pylist(), dtype=object)))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)]


def read_arrow_splits(params: DataParams, path: Path, seed: int, multi_label: bool) -> Splits:
    """Splits whose training rows live in an Arrow table (`data.arrow`); validation and test stay lists."""
    import pyarrow.compute as pc
    from datasets import Features, Sequence, Value

    if params.train_extra:
        raise ConfigError("data.train_extra works with data.arrow: false (the training rows of an Arrow split come "
                          "from one file); merge the files, or set data.arrow=false")
    own = file_params(params.train, params)[1]
    features = Features({"text": Value("string"), "text_pair": Value("string"), "labels": Sequence(Value("string")),
                         "line": Value("int64"), "skipped": Value("string")})
    table = build_table(text_rows, path, features, params=own.model_dump_json(), multi_label=multi_label)
    skipped_column = table.data.column("skipped")
    skipped: list[str] = []
    if skipped_column.null_count < len(table):
        skipped = [m for m in skipped_column.to_pylist() if m is not None]
        table = table.filter(lambda batch: [m is None for m in batch], input_columns="skipped", batched=True)
    if params.max_train_samples is not None and params.max_train_samples < len(table):
        table = table.select(range(params.max_train_samples))
    if len(table) == 0:
        raise DataError(f"{path}: no usable rows (the path of a .jsonl, .csv, .tsv or .parquet training file)")
    label_lists = (table.flatten_indices() if table._indices is not None else table).data.column("labels")
    found = sort_labels(pc.unique(pc.list_flatten(label_lists)).to_pylist())
    labels = list(params.labels or found)
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise DataError(f"{path}: label '{unknown[0]}' is not in data.labels ({', '.join(labels[:20])}); add it there")
    _enough_labels(str(path), labels, multi_label)
    rows = ArrowRows(table, _text_example(str(path)), file_stamp(path))
    errors = RowErrors(params.on_error)

    def load(spec: str | DataFile | None) -> list | None:
        if spec is None:
            return None
        return check_labels(read_examples(*file_params(spec, params), multi_label, errors), labels, errors)
    validation, test = load(params.validation), load(params.test)
    keys = _stratify_codes(label_lists) if validation is None or test is None else None
    if test is None:
        kept, held = split_indices(len(rows), params.test_fraction, seed, keys)
        test, rows, keys = rows.select(held).materialise(), rows.select(kept), keys[kept]
    if validation is None:
        kept, held = split_indices(len(rows), params.validation_fraction, seed, keys)
        validation, rows = rows.select(held).materialise(), rows.select(kept)
    return Splits(train=rows, validation=validation[: params.max_eval_samples], test=test, labels=labels,
                  skipped=skipped + errors.skipped)


def saved_split(task: Any, run_dir: Path, name: str) -> list[Any]:
    """A split a run saved under <run>/data/ through `task.save_examples` (empty when it has none)."""
    path = Path(run_dir) / "data" / f"{name}.jsonl"
    return task.load_examples(path) if path.is_file() else []
