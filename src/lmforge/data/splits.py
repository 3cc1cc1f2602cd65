"""Train/validation/test splits from files, or a seeded stratified split of the training file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sklearn.model_selection import train_test_split

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample, check_labels, infer_labels, read_examples
from lmforge.data.params import DataFile, DataParams, file_params
from lmforge.errors import ConfigError, DataError


@dataclass
class Splits:
    train: list[TextExample]
    validation: list[TextExample]
    test: list[TextExample]
    labels: list[str]
    skipped: list[str] = field(default_factory=list)


def _stratify_key(examples: list[TextExample]) -> list[str] | None:
    """Stratify on the (first) label when every class has at least two rows, else split at random."""
    keys = ["|".join(ex.labels) for ex in examples]
    counts = Counter(keys)
    return keys if counts and min(counts.values()) >= 2 else None


def _split_off(examples: list[TextExample], fraction: float, seed: int) -> tuple[list[TextExample], list[TextExample]]:
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    keys = _stratify_key(examples)
    try:
        kept, held = train_test_split(examples, test_size=fraction, random_state=seed, stratify=keys)
    except ValueError:  # too few rows per class for the requested share
        kept, held = train_test_split(examples, test_size=fraction, random_state=seed)
    return list(kept), list(held)


def read_splits(params: DataParams, seed: int, multi_label: bool = False) -> Splits:
    """Read the configured files; split validation/test off train when their files are absent."""
    if params.train is None:
        raise ConfigError("data.train is required: the path of a .jsonl, .csv or .tsv training file")
    errors = RowErrors(params.on_error)
    train_path, train_params = file_params(params.train, params)
    train = read_examples(train_path, train_params, multi_label, errors)
    if params.max_train_samples is not None:
        train = train[: params.max_train_samples]
    if not train:
        raise DataError(f"{train_path}: no usable training rows")
    labels = list(params.labels) if params.labels else infer_labels(train)
    train = check_labels(train, labels, errors)
    if not multi_label and len(labels) < 2:
        raise DataError(f"{train_path}: found only one label ({labels[0] if labels else 'none'}); "
                        f"classification needs at least two (set data.labels or check data.label_column)")

    def from_file(spec: str | DataFile | None) -> list[TextExample] | None:
        if spec is None:
            return None
        path, own = file_params(spec, params)
        return check_labels(read_examples(path, own, multi_label, errors), labels, errors)

    validation = from_file(params.validation)
    test = from_file(params.test)
    if test is None:
        train, test = _split_off(train, params.test_fraction, seed)
    if validation is None:
        train, validation = _split_off(train, params.validation_fraction, seed)
    return Splits(train=train, validation=validation, test=test, labels=labels, skipped=errors.skipped)
