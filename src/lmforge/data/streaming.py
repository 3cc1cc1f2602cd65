"""Training data read from its file as it is needed (`data.streaming: true`), for files larger than memory.

One counting pass reads every row through the task's own validating reader: it counts the training rows
(the epoch length), collects the label set, and keeps the validation/test rows a seeded draw holds out.
Each epoch then reads the file again through a seeded shuffle buffer (`data.shuffle_buffer` rows), and
batches are tokenised as they are drawn. Which rows are held out, and the order of every epoch, are pure
functions of (seed, epoch), so a resumed run re-reads the stream, skips the batches already trained on
without tokenising them, and continues bit-exact.

(datasets' IterableDataset was measured first: ~66 µs of overhead per row here, and its shuffle buffer is not
part of its resumable state — so the buffer and the skip are ours, and the rows come from lmforge's readers.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lmforge.data.arrow import file_stamp, write_source
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import sort_labels
from lmforge.data.params import DataFile, DataParams, file_params
from lmforge.data.readers import locate
from lmforge.errors import ConfigError, DataError

T = TypeVar("T")
DRAWS = 1 << 14  # uniforms drawn per block

#: reads one file lazily: (path, params with the file's own columns, errors) -> examples
Iterate = Callable[[str, DataParams, RowErrors], Iterator[Any]]


def _uniforms(seed: int, salt: int) -> Iterator[float]:
    """An endless seeded stream of uniforms in [0, 1), drawn in blocks."""
    rng = np.random.default_rng([seed, salt])
    while True:
        yield from rng.random(DRAWS).tolist()


def shuffled(items: Iterable[T], buffer_size: int, seed: int, epoch: int) -> Iterator[T]:
    """`items` in a seeded order through a buffer of `buffer_size` (each incoming item replaces a random one
    of the buffer, which is handed out); the buffer's rest comes last, permuted."""
    rng = np.random.default_rng([seed, epoch, 1])
    buffer: list[T] = []
    picks: list[int] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        if not picks:
            picks = rng.integers(0, buffer_size, DRAWS).tolist()[::-1]
        slot = picks.pop()
        buffer[slot], item = item, buffer[slot]
        yield item
    for slot in rng.permutation(len(buffer)).tolist():
        yield buffer[slot]


class StreamedRows:
    """The training split of a streamed file: `len()` is its row count; iteration reads it in file order;
    `epoch(seed, epoch)` reads it in that epoch's shuffled order."""

    def __init__(self, read: Callable[[], Iterator[Any]], rows: int, route: Callable[[], Iterator[str]],
                 source: dict, buffer_size: int, forms: Counter | None = None) -> None:
        self._read, self._route, self.rows, self.source = read, route, rows, source
        self.buffer_size, self.forms = buffer_size, forms or Counter()

    def __len__(self) -> int:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        routes = self._route()
        kept = (example for example in self._read() if next(routes) == "train")
        return islice(kept, self.rows)

    def epoch(self, seed: int, epoch: int) -> Iterator[Any]:
        return shuffled(iter(self), self.buffer_size, seed, epoch)

    def record(self, path: Path) -> None:
        """Write where the split's rows come from (`NAME.source.json`) instead of a copy of them."""
        write_source(path, self.source | {"rows": self.rows, "streaming": True, "shuffle_buffer": self.buffer_size})


class StreamedFeatures:
    """A streamed split with its tokeniser: `encode(examples)` turns a drawn batch into features."""

    def __init__(self, rows: StreamedRows, encode: Callable[[list], list[dict]]) -> None:
        self.rows, self.encode = rows, encode

    def __len__(self) -> int:
        return len(self.rows)


class StreamOrder:
    """Batches of a streamed split, as BatchOrder gives them for a list: `batch_size` rows in the epoch's shuffled
    order, every n-th batch to process n; `set_epoch(epoch, skip)` re-reads the stream and skips the batches a
    resumed run already trained on without tokenising them."""

    def __init__(self, features: StreamedFeatures, batch_size: int, seed: int, process_index: int = 0,
                 num_processes: int = 1) -> None:
        self.features, self.batch_size, self.seed = features, batch_size, seed
        self.process_index, self.num_processes = process_index, num_processes
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _usable(self) -> int:
        total = math.ceil(len(self.features) / self.batch_size)
        return total - total % self.num_processes if self.num_processes > 1 else total

    def __len__(self) -> int:
        return self._usable() // self.num_processes

    def feature_batches(self, features: StreamedFeatures) -> Iterator[list[dict]]:
        examples = features.rows.epoch(self.seed, self.epoch)
        first = self.skip * self.num_processes  # global batches done before a resume
        for number in range(self._usable()):
            batch = list(islice(examples, self.batch_size))
            if number >= first and number % self.num_processes == self.process_index:
                yield features.encode(batch)


def stream_splits(iterate: Iterate, data: DataParams, seed: int, expected: str,
                  labels_of: Callable[[Any], Iterable[str]] | None = None,
                  check: Callable[[list, list[str], RowErrors], list] | None = None) -> tuple:
    """(train StreamedRows, validation, test, labels, skipped) of a streamed training file. Held-out rows
    (no validation/test file) are a seeded draw of each usable row; `labels_of(example)` collects the label
    set in the counting pass (data.labels when given); `check(examples, labels, errors)` filters the rows of
    the validation/test files by that set."""
    _check_streamable(data)
    path, own = file_params(data.train, data)
    source = locate(path)
    counting = RowErrors(data.on_error)
    validation: list = []
    test: list = []
    found: set[str] = set()
    forms: Counter = Counter()
    rows = 0
    limit = data.max_train_samples

    def route() -> Iterator[str]:
        return _routes(seed, data, data.validation is None, data.test is None)

    routes = route()
    for example in iterate(path, own, counting):
        where = next(routes)
        if where == "validation" and (data.max_eval_samples is None or len(validation) < data.max_eval_samples):
            validation.append(example)
        elif where == "test":
            test.append(example)
        elif where == "train":
            rows += 1
            forms[getattr(example, "form", None)] += 1
        if labels_of is not None:
            found.update(labels_of(example))
        if rows == limit:
            break
    if rows == 0:
        raise DataError(f"{path}: no usable rows ({expected})")
    labels = list(data.labels or sort_labels(found)) if labels_of is not None else []

    def read() -> Iterator[Any]:
        return iterate(path, own, RowErrors(data.on_error))

    errors = RowErrors(data.on_error)
    for name, spec in (("validation", data.validation), ("test", data.test)):
        if spec is None:
            continue
        examples = list(islice(iterate(*file_params(spec, data), errors),
                               data.max_eval_samples if name == "validation" else None))
        examples = check(examples, labels, errors) if check is not None else examples
        validation, test = (examples, test) if name == "validation" else (validation, examples)
    forms.pop(None, None)
    train = StreamedRows(read, rows, route, file_stamp(source), data.shuffle_buffer, forms)
    return train, validation, test, labels, counting.skipped + errors.skipped


def _routes(seed: int, data: DataParams, split_validation: bool, split_test: bool) -> Iterator[str]:
    """Where each usable row goes ("train", "validation" or "test"): a seeded draw per row, so every pass over
    the file routes it the same way."""
    test_share = data.test_fraction if split_test else 0.0
    held = test_share + (data.validation_fraction if split_validation else 0.0)
    for draw in _uniforms(seed, 2):
        yield "test" if draw < test_share else "validation" if draw < held else "train"


def _check_streamable(data: DataParams) -> None:
    if data.train_extra:
        raise ConfigError("data.train_extra works with data.streaming: false (a streamed training split comes from "
                          "one file); merge the files, or set data.streaming=false")
    if isinstance(data.train, DataFile) and data.train.target_path:
        raise ConfigError("data.streaming reads one file of rows; aligned text files (target_path) are read whole — "
                          "write them as jsonl {source, target} rows, or set data.streaming=false")
    if data.validation is None and data.validation_fraction > 0 and data.max_eval_samples is None:
        raise ConfigError("data.streaming: the validation rows split off the stream are held in memory; set "
                          "data.max_eval_samples (e.g. 2000), give data.validation, or set data.validation_fraction=0")
    if data.test is None and data.test_fraction > 0:
        raise ConfigError("data.streaming: a test split drawn off the stream would be held in memory whole; give "
                          "data.test as a file, or set data.test_fraction=0")


def head_rows(examples: Any, count: int = 100_000) -> list:
    """A split as a list: itself when it is one, else its first `count` rows (a baseline estimate)."""
    if isinstance(examples, list):
        return examples
    return list(islice(iter(examples), count))
