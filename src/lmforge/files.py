"""Atomic file writes (a temporary file in the same folder, then a rename) and text reads that name the
file and line of bytes that are not UTF-8."""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from lmforge.errors import RunDirError

T = TypeVar("T")
STAGING_PREFIX = ".tmp-"  # files and folders being written; renamed into place when complete
SWAPPED_PREFIX = ".old-"  # a folder moved aside while its replacement is renamed into place


def clean_interrupted_writes(folder: Path) -> list[Path]:
    """Undo what a kill left in `folder` mid-write: staging files and folders are removed, and a folder
    moved aside whose replacement never landed is put back. Returns what was removed or restored."""
    touched: list[Path] = []
    if not Path(folder).is_dir():
        return touched
    for old in sorted(Path(folder).glob(SWAPPED_PREFIX + "*")):
        final = old.with_name(old.name[len(SWAPPED_PREFIX):])
        if final.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(old, final)
        touched.append(old)
    for staging in sorted(Path(folder).glob(STAGING_PREFIX + "*")):
        shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
        touched.append(staging)
    return touched


def remove_entries(folder: Path, patterns: Iterable[str]) -> list[str]:
    """Remove the entries of `folder` whose names match one of `patterns` (glob) and nothing else: lmforge
    cleans only what it wrote. The names removed."""
    patterns = tuple(patterns)
    removed = []
    for entry in sorted(Path(folder).iterdir()):
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in patterns):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry.name)
    return removed


def discard_folder(folder: Path, patterns: Iterable[str]) -> None:
    """Remove what lmforge wrote into `folder` (`remove_entries`), then the folder itself once nothing else is in it."""
    remove_entries(folder, patterns)
    if not any(Path(folder).iterdir()):
        Path(folder).rmdir()


def file_in_the_way(path: Path) -> Path | None:
    """The file that stands where `path` or one of its parents must be a folder (`a_file/run`), else None."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def check_writable_folder(path: Path, what: str) -> None:
    """Refuse a folder to write into that is a file or lies under one (`a_file/run`), naming `what` set it."""
    blocking = file_in_the_way(path)
    if blocking is not None:
        where = "is a file" if blocking == Path(path) else f"lies under {blocking}, which is a file"
        raise RunDirError(f"{what} {path} {where}; give a folder path")


def no_space(error: OSError, folder: Path, needed_bytes: int | None = None) -> RunDirError | None:
    """The one-line error for a write that ran out of disk space in `folder` (None for other errors)."""
    text = str(error)
    if getattr(error, "errno", None) not in (errno.ENOSPC, errno.EDQUOT) and "No space left" not in text:
        return None
    free = shutil.disk_usage(folder).free if Path(folder).exists() else 0
    need = f"; it needs about {needed_bytes / 2**20:.0f} MiB" if needed_bytes else ""
    return RunDirError(f"no space left on the disk of {folder} ({free / 2**20:.0f} MiB free{need}); free some space "
                       "or choose another train.output_dir, then continue with --resume")


def atomic_write_with(path: Path, write: Callable[[str], T]) -> T:
    """Let `write(temporary_path)` write the file, then rename it to `path`: readers see the old file or
    the new one, never half of one. Returns what `write` returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        result = write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def decode_utf8(data: bytes, where: str, error: type[Exception], first_line: int = 1, newlines: bool = True) -> str:
    """`data` (starting at line `first_line` of `where`) as text, its line endings made "\\n" unless
    `newlines` is false; a leading byte-order mark is dropped (as utf-8-sig, pandas and `datasets` do); bytes
    that are not UTF-8 raise `error` naming `where` and the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data[:exc.start].count(b"\n")
        raise error(f"{where}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    if first_line == 1 and text.startswith("\ufeff"):  # a byte-order mark, as some editors write: read past it
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n") if newlines else text


def read_utf8(path: Path, error: type[Exception]) -> str:
    """The text of `path` (see `decode_utf8`)."""
    return decode_utf8(Path(path).read_bytes(), str(path), error)
