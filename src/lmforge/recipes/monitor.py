"""`lmforge monitor RUN_DIR --input stream.txt|-`: sentiment monitoring with alerts.

A tuned classifier labels a stream of texts as they come; a sliding window per topic keeps the share
of negative texts, and an alert line is written when that share reaches the threshold (and a
recovery line once it falls below the recovery level, a little lower, so a rate hovering at the
threshold does not flap). A PNG trend plot of every topic's negative rate is kept up
to date. Input lines are `TEXT`, `TOPIC<TAB>TEXT`, or JSON objects {"text": …, "topic": …}.
"""

from __future__ import annotations

import contextlib
import json
import select
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lmforge.data.readers import TextLines, open_text, stdin_lines
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate.plots import plot_trend
from lmforge.models.labels import label_meaning
from lmforge.runs.run_dir import load_run_config
from lmforge.runs.served_task import served_task

NEGATIVE_NAMES = ("negative", "neg", "bad", "0")
DEFAULT_TOPIC = "all"


@dataclass
class Item:
    line: int
    topic: str
    text: str


def parse_line(line: str, number: int, source: str) -> Item | None:
    """An input line as an item; None for a blank line."""
    stripped = line.rstrip("\n")
    if not stripped.strip():
        return None
    if stripped.lstrip().startswith("{"):
        try:
            row = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise DataError(f"{source}, line {number}: not valid JSON ({error.msg}); give TEXT, TOPIC<TAB>TEXT or "
                            '{"text": …, "topic": …}') from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError(f'{source}, line {number}: a JSON line needs a non-empty "text" string')
        return Item(number, str(row.get("topic") or DEFAULT_TOPIC), row["text"])
    topic, tab, text = stripped.partition("\t")
    if tab and text.strip():
        return Item(number, topic.strip() or DEFAULT_TOPIC, text)
    return Item(number, DEFAULT_TOPIC, stripped)


def read_batches(stream: TextIO, source: str, size: int, wait_s: float = 0.5) -> Iterator[list[Item]]:
    """Items in batches of up to `size`; a live stream (a pipe, a terminal) hands over what it has after
    `wait_s` without input, so alerts are not held back waiting for a full batch. A malformed line is
    reported on stderr and skipped."""
    live = source == "<stdin>"
    batch: list[Item] = []
    for number, line in enumerate(stream, start=1):
        try:
            item = parse_line(line, number, source)
        except DataError as error:  # one bad line must not stop a live monitor
            print(f"lmforge: {error}; line skipped", file=sys.stderr)
            item = None
        if item is not None:
            batch.append(item)
        idle = live and batch and not select.select([stream], [], [], wait_s)[0]
        if len(batch) >= size or idle:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Window:
    """The last `size` verdicts of one topic and whether it is in alert."""

    size: int
    verdicts: deque = field(default_factory=deque)
    alerting: bool = False

    def add(self, negative: bool) -> float:
        self.verdicts.append(negative)
        if len(self.verdicts) > self.size:
            self.verdicts.popleft()
        return sum(self.verdicts) / len(self.verdicts)


class Monitor:
    """Per-topic sliding windows of negative verdicts; `observe` returns the alert/recovery events."""

    def __init__(self, window: int, threshold: float, min_count: int, recover_below: float | None = None) -> None:
        if not 0 < threshold <= 1:
            raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")
        recover_below = max(threshold - 0.1, 0.0) if recover_below is None else recover_below
        if not 0 <= recover_below <= threshold:
            raise ConfigError(f"--recover-below must be in [0, threshold {threshold}], got {recover_below}")
        self.recover_below = recover_below
        if window < 1 or min_count < 1:
            raise ConfigError("--window and --min-count must be at least 1")
        self.window, self.threshold, self.min_count = window, threshold, min(min_count, window)
        self.windows: dict[str, Window] = {}
        self.trend: dict[str, list[tuple[int, float]]] = {}  # topic -> (line, negative rate)
        self.alerts: list[dict] = []

    def observe(self, item: Item, negative: bool, label: str) -> dict | None:
        window = self.windows.setdefault(item.topic, Window(self.window))
        rate = window.add(negative)
        self.trend.setdefault(item.topic, []).append((item.line, rate))
        if len(window.verdicts) < self.min_count:
            return None
        event = None
        if rate >= self.threshold and not window.alerting:
            window.alerting, event = True, "alert"
        elif rate < self.recover_below and window.alerting:
            window.alerting, event = False, "recovered"
        if event is None:
            return None
        record = {"event": event, "topic": item.topic, "line": item.line, "negative_rate": round(rate, 4),
                  "window": len(window.verdicts), "threshold": self.threshold, "last_text": item.text, "last_label": label}
        self.alerts.append(record)
        return record


def alert_line(record: dict) -> str:
    word = "ALERT" if record["event"] == "alert" else "RECOVERED"
    return (f"{word} topic={record['topic']} negative_rate={record['negative_rate']:.2f} "
            f"(threshold {record['threshold']:.2f}, last {record['window']} texts) at line {record['line']}: "
            f"{record['last_text'][:80]!r}")


def negative_label(labels: list[str], chosen: str | None) -> str:
    """The run's negative label: --negative-label, or the one named negative/neg/bad/0."""
    return label_meaning(labels, chosen, NEGATIVE_NAMES, "--negative-label", "is negative")


def monitor(run_dir: Path, source: str, window: int = 50, threshold: float = 0.5, min_count: int = 10,
            negative: str | None = None, recover_below: float | None = None, alerts_path: Path | None = None, plot_path: Path | None = None,
            predictions_path: Path | None = None, batch_size: int = 16, out: TextIO | None = None,
            device: str | None = None) -> Monitor:
    """Classify `source` (a file, or - for standard input) and write alert lines to `out` (and
    `alerts_path` as JSON lines); the trend plot is refreshed after every batch that raised an event and at
    the end."""
    config = load_run_config(run_dir)
    if config.task.name not in ("text-classification", "prompt-classification"):
        raise ConfigError(f"{run_dir} is a {config.task.name} run; monitor needs a text-classification run")
    out = out or sys.stdout
    watcher = Monitor(window, threshold, min_count, recover_below)
    served = served_task(run_dir, device=device)
    stream = stdin_lines() if source == "-" else _open(source)
    name = "<stdin>" if source == "-" else source
    label_of_negative: str | None = None
    with _appending(alerts_path) as alerts_file, _appending(predictions_path) as predictions_file:  # noqa: SIM117
        for batch in read_batches(stream, name, batch_size):
            predictions = served.predict([item.text for item in batch])
            if label_of_negative is None:
                label_of_negative = negative_label(list(predictions[0]["probabilities"]), negative)
            events = 0
            for item, prediction in zip(batch, predictions, strict=True):
                if predictions_file is not None:
                    predictions_file.write(json.dumps({"line": item.line, "topic": item.topic, "text": item.text,
                                                       "label": prediction["label"]}) + "\n")
                record = watcher.observe(item, prediction["label"] == label_of_negative, prediction["label"])
                if record is not None:
                    events += 1
                    print(alert_line(record), file=out, flush=True)
                    if alerts_file is not None:
                        alerts_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                        alerts_file.flush()
            if events and plot_path is not None:
                plot_trend(watcher.trend, watcher.alerts, threshold, plot_path)
    if plot_path is not None and watcher.trend:
        plot_trend(watcher.trend, watcher.alerts, threshold, plot_path)
    return watcher


def _open(path: str) -> TextLines:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; give a text file or - for standard input")
    return open_text(Path(path))  # read lazily as a stream


def _appending(path: Path | None) -> contextlib.AbstractContextManager[TextIO | None]:
    """`path` opened for appending, or nothing."""
    if path is None:
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")
