"""What to do with a malformed row: stop with its file:line, or skip it and count."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import DataError


@dataclass
class RowErrors:
    """Collects skipped rows when `on_error: skip`, raises at once when `on_error: raise`."""

    mode: str = "raise"
    skipped: list[str] = field(default_factory=list)

    def report(self, where: str, problem: str) -> None:
        message = f"{where}: {problem}"
        if self.mode == "raise":
            raise DataError(message + " (fix the row, or set data.on_error=skip to skip such rows)")
        self.skipped.append(message)
