"""metrics.jsonl (one JSON object a line) and, optionally, TensorBoard event files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.files import atomic_write_text


class MetricsLog:
    """Append-only log; on resume, entries past the checkpoint's step are dropped first."""

    def __init__(self, run_dir: Path, tensorboard: bool | None, resume_step: int | None = None, trackers: Any = None):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if (entry := _entry(line)) is not None and _step_of(entry) <= resume_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.writer, self.trackers = None, trackers
        if tensorboard_wanted(tensorboard):
            from torch.utils.tensorboard import SummaryWriter

            # events after the checkpoint's step are written again; those at or before it (the epoch's
            # validation included) are kept
            self.writer = SummaryWriter(str(run_dir / "tensorboard"),
                                        purge_step=None if resume_step is None else resume_step + 1)

    def write(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        flat = entry.get("validation", entry)
        step = flat.get("step", 0)
        prefix = "validation" if "validation" in entry else "train"
        scalars = {f"{prefix}/{key}": value for key, value in flat.items() if isinstance(value, float) and key != "epoch"}
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)
        if self.trackers is not None:
            self.trackers.log(scalars, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.trackers is not None:
            self.trackers.close()


def tensorboard_wanted(setting: bool | None) -> bool:
    """train.tensorboard: true needs the package (one-line error naming the extra); null means "when installed"."""
    if setting is False:
        return False
    try:
        if importlib.util.find_spec("tensorboard") is not None:
            return True
    except (ImportError, ValueError):  # a module entry without a spec: not usable
        pass
    if setting:
        raise ConfigError("train.tensorboard: true needs tensorboard, which is not installed: pip install "
                          "'lmforge[tensorboard]', or set train.tensorboard=false")
    return False


def _step_of(entry: dict[str, Any]) -> int:
    return entry.get("validation", entry).get("step", 0)


def _entry(line: str) -> dict[str, Any] | None:
    """A log line's entry; None for a blank line or one a kill cut short."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None
