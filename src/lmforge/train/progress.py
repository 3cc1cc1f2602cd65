"""Progress for logs: where stderr is not a terminal (CI, nohup, `| tee`) the progress bar stays hidden,
so a line with steps, speed, time left and loss is printed every few seconds instead."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days:,}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLines:
    """`update(done, loss)` prints `epoch E/N: batch b/B (p%), r samples/s, ETA t (run: T), loss l` at most every
    `every_s` seconds — only when stderr is not a terminal (a terminal has the bar). `later` is the batches the
    run still has after this epoch (later epochs, bounded by train.max_steps): the run's ETA counts them."""

    def __init__(self, label: str, total: int, start: int, batch_size: int, every_s: float | None,
                 enabled: bool = True, later: int = 0) -> None:
        self.label, self.total, self.start, self.batch_size, self.every_s = label, total, start, batch_size, every_s
        self.later = later
        self.enabled = enabled and every_s is not None and not sys.stderr.isatty()
        self.started = self.last = time.monotonic()

    def update(self, done: int, loss: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.started, 1e-9)  # batches per second this session
        print(f"lmforge: {self.label}: batch {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%), "
              f"{rate * self.batch_size:.1f} samples/s, ETA {self.eta(done, rate)}, loss {loss:.4f}",
              file=sys.stderr, flush=True)

    def eta(self, done: int, rate: float) -> str:
        """Time left in this epoch, and in the whole run where later epochs follow."""
        if not rate:
            return "?"
        epoch = _clock((self.total - done) / rate)
        return f"{epoch} (run: {_clock((self.total - done + self.later) / rate)})" if self.later else epoch
