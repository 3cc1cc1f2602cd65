"""Labelled text examples (text, optional pair, label or labels) read through a column mapping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.data.readers import detect_format, locate, read_records
from lmforge.errors import DataError

E = TypeVar("E")


@dataclass
class TextExample:
    """One row: `labels` is empty for unlabelled input, one item for single-label tasks."""

    text: str
    text_pair: str | None
    labels: tuple[str, ...]
    where: str  # "file, line N", for error messages


def _as_labels(value: Any, multi_label: bool, separator: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        if not multi_label:
            return None
        return tuple(str(v).strip() for v in value)
    text = str(value).strip()
    if multi_label:
        parts = text.split(separator) if separator else [text]
        return tuple(p.strip() for p in parts if p.strip())
    return (text,) if text else None


def read_examples(path: str | Path, params: DataParams, multi_label: bool = False,
                  errors: RowErrors | None = None, require_labels: bool = True) -> list[TextExample]:
    """Read a file into TextExamples, reporting rows with missing columns, empty text or no label."""
    return list(iter_examples(path, params, multi_label, errors or RowErrors(params.on_error), require_labels))


def text_rows(path: str, params: str, multi_label: bool) -> Iterator[dict]:
    """A labelled file's rows as plain dicts for an Arrow table (`data.arrow`): {text, text_pair, labels,
    line, skipped}; a row skipped under data.on_error=skip comes as {skipped: the reason} only."""
    data = DataParams.model_validate_json(params)
    errors = RowErrors(data.on_error)
    reported = 0

    def skipped_since() -> Iterator[dict]:
        nonlocal reported
        for message in errors.skipped[reported:]:
            yield {"text": None, "text_pair": None, "labels": None, "line": None, "skipped": message}
        reported = len(errors.skipped)
    for example in iter_examples(path, data, multi_label, errors, True):
        yield from skipped_since()
        line = int(example.where.rsplit("line ", 1)[1])
        yield {"text": example.text, "text_pair": example.text_pair, "labels": list(example.labels), "line": line,
               "skipped": None}
    yield from skipped_since()


def iter_examples(path: str | Path, params: DataParams, multi_label: bool, errors: RowErrors,
                  require_labels: bool = True) -> Iterator[TextExample]:
    """The TextExamples of a file, one at a time (see `read_examples`)."""
    delimited = detect_format(locate(path), params.format) in ("csv", "tsv")
    header_checked = not delimited
    for number, record in read_records(path, params.format, errors):
        where = f"{path}, line {number}"
        if not header_checked:
            _check_header(path, record, params, require_labels)
            header_checked = True
        text = record.get(params.text_column)
        if text is None:
            errors.report(where, f"missing column '{params.text_column}' (set data.text_column if it is named otherwise)")
            continue
        if not isinstance(text, str):
            errors.report(where, f"column '{params.text_column}' holds {type(text).__name__} {json.dumps(text)[:40]}, not text; "
                                 "write it as a JSON string")
            continue
        if not text.strip():
            errors.report(where, f"empty text in column '{params.text_column}'")
            continue
        pair = None
        if params.text_pair_column:
            pair = record.get(params.text_pair_column)
            if not isinstance(pair, str) or not pair.strip():
                errors.report(where, f"missing or empty '{params.text_pair_column}'")
                continue
        labels: tuple[str, ...] = ()
        if require_labels:
            if params.label_column not in record:
                errors.report(where, f"missing column '{params.label_column}' (set data.label_column if it is named otherwise)")
                continue
            parsed = _as_labels(record[params.label_column], multi_label, params.label_separator)
            if parsed is None or (not multi_label and not parsed):
                errors.report(where, f"empty or invalid label {record[params.label_column]!r}")
                continue
            labels = parsed
        yield TextExample(text=text, text_pair=pair, labels=labels, where=where)


def _check_header(path: str | Path, record: dict, params: DataParams, require_labels: bool) -> None:
    wanted = {params.text_column: "text_column"}
    if require_labels:
        wanted[params.label_column] = "label_column"
    if params.text_pair_column:
        wanted[params.text_pair_column] = "text_pair_column"
    for column, key in wanted.items():
        if column not in record:
            raise DataError(f"{path}, line 1: no column '{column}' in the header (columns: {', '.join(record)}); "
                            f"set data.{key} to the right column name")


def sort_labels(found) -> list[str]:
    """Sorted label set; numeric labels sort as numbers ('2' before '10')."""
    def key(label: str) -> tuple[int, float | str]:
        try:
            return (0, float(label))
        except ValueError:
            return (1, label)

    return sorted(set(found), key=key)


def infer_labels(examples: list[TextExample]) -> list[str]:
    """The label set of labelled text examples, sorted."""
    return sort_labels(label for ex in examples for label in ex.labels)


def check_labels(examples: list[E], labels: list[str], errors: RowErrors,
                 labels_of: Callable[[E], Iterable[str]] = lambda ex: ex.labels, what: str = "label") -> list[E]:
    """Keep examples whose labels (`labels_of`, e.g. a sentence's tags) are all in `labels`; report the others."""
    known = set(labels)
    kept = []
    for ex in examples:
        unknown = [label for label in labels_of(ex) if label not in known]
        if unknown:
            errors.report(ex.where, f"unknown {what} '{unknown[0]}' (known: {', '.join(labels[:20])}"
                          f"{', …' if len(labels) > 20 else ''}); add it to data.labels")
            continue
        kept.append(ex)
    return kept
