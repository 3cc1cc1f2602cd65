"""Progress for logs: where stderr is not a terminal (CI, nohup, `| tee`) the progress bar stays hidden,
so a line with steps, speed, time left and loss is printed every few seconds instead."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLines:
    """`update(done, loss)` prints `epoch E/N: batch b/B (p%), r samples/s, ETA t, loss l` at most every
    `every_s` seconds — only when stderr is not a terminal (a terminal has the bar)."""

    def __init__(self, label: str, total: int, start: int, batch_size: int, every_s: float | None,
                 enabled: bool = True) -> None:
        self.label, self.total, self.start, self.batch_size, self.every_s = label, total, start, batch_size, every_s
        self.enabled = enabled and every_s is not None and not sys.stderr.isatty()
        self.started = self.last = time.monotonic()

    def update(self, done: int, loss: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.started, 1e-9)  # batches per second this session
        left = (self.total - done) / rate if rate else float("inf")
        print(f"lmforge: {self.label}: batch {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%), "
              f"{rate * self.batch_size:.1f} samples/s, ETA {_clock(left) if left != float('inf') else '?'}, "
              f"loss {loss:.4f}", file=sys.stderr, flush=True)
