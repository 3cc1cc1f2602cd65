"""Train/validation/test splits from files, or a seeded stratified split of the training file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sklearn.model_selection import train_test_split

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample, check_labels, infer_labels, read_examples
from lmforge.data.params import DataFile, DataParams, file_params
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


def _stratify_keys(keys: list[str] | None) -> list[str] | None:
    """Stratify only when every class has at least two rows, else split at random."""
    if keys is None:
        return None
    counts = Counter(keys)
    return keys if counts and min(counts.values()) >= 2 else None


def split_off(examples: list[T], fraction: float, seed: int,
              key: Callable[[T], str] | None = None) -> tuple[list[T], list[T]]:
    """(kept, held out): a seeded split of `fraction` of the examples, stratified on `key` when given."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    keys = _stratify_keys([key(ex) for ex in examples] if key else None)
    try:
        kept, held = train_test_split(examples, test_size=fraction, random_state=seed, stratify=keys)
    except ValueError:  # too few rows per class for the requested share
        kept, held = train_test_split(examples, test_size=fraction, random_state=seed)
    return list(kept), list(held)


def assemble_splits(read: Callable[[str, DataParams, RowErrors], list[T]], data: DataParams, seed: int, expected: str,
                    key: Callable[[T], str] | None = None,
                    after_train: Callable[[list[T]], list[str]] | None = None) -> Splits:
    """Each split read from its file with `read(path, params, errors)`, or split off train.

    `after_train(train)` runs before the other files are read and returns the label set (a task infers
    it there); `expected` describes the training file in the error raised when data.train is missing."""
    if data.train is None:
        raise ConfigError(f"data.train is required: {expected}")
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
    files (or of train, when data.labels is given) with other labels are reported."""
    labels: list[str] = list(params.labels or [])

    def read(path: str, own: DataParams, errors: RowErrors) -> list[TextExample]:
        examples = read_examples(path, own, multi_label, errors)
        return check_labels(examples, labels, errors) if labels else examples

    def set_labels(train: list[TextExample]) -> list[str]:
        labels.extend([] if labels else infer_labels(train))
        if not multi_label and len(labels) < 2:
            raise DataError(f"{file_params(params.train, params)[0]}: found only one label ({labels[0] if labels else 'none'}); "
                            f"classification needs at least two (set data.labels or check data.label_column)")
        return labels

    return assemble_splits(read, params, seed, "the path of a .jsonl, .csv or .tsv training file", _label_key, set_labels)
