"""Atomic file writes: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def atomic_write_with(path: Path, write: Callable[[str], T]) -> T:
    """Let `write(temporary_path)` write the file, then rename it to `path`: readers see the old file or
    the new one, never half of one. Returns what `write` returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
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
