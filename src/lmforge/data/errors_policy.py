"""What to do with a malformed row: stop with its file:line, or skip it and count."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import DataError


@dataclass
class RowErrors:
    """Collects skipped rows when `on_error: skip`, raises at once when `on_error: raise` with `how_to_fix`."""

    mode: str = "raise"
    skipped: list[str] = field(default_factory=list)
    how_to_fix: str = "fix the row, or set data.on_error=skip to skip such rows"

    @classmethod
    def without_config(cls) -> RowErrors:
        """For commands that read a file without a config, where data.on_error cannot be set."""
        return cls("raise", how_to_fix="fix the row")

    def report(self, where: str, problem: str) -> None:
        message = f"{where}: {problem}"
        if self.mode == "raise":
            raise DataError(f"{message} ({self.how_to_fix})")
        self.skipped.append(message)
