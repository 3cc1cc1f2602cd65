"""Training data larger than memory: rows in Apache Arrow through Hugging Face `datasets`, memory-mapped.

A training file at least `data.arrow_min_mb` large (or any, with `data.arrow: true`) is read once by
lmforge's own validating reader into an Arrow table in the datasets cache (keyed by the file's path,
size and modification time, so a second run reads no text), split by row indices, and tokenised with
`Dataset.map` under a fingerprint of the rows, tokenizer and settings — a second run with the same
data and tokenizer skips tokenising. Batches read their rows lazily; nothing holds a Python object per
row. The run directory records where the rows came from (`data/train.source.json`) instead of a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import DataError, LmforgeError

ROWS_PER_BATCH = 1000


def file_stamp(path: Path) -> dict[str, Any]:
    """What identifies a file's contents cheaply: path, size, modification time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _generate(read: Callable[..., Iterator[dict]], stamp: dict, **kwargs: Any) -> Iterator[dict]:
    """datasets' generator: the rows `read(**kwargs)` yields (`stamp` only keys the cache)."""
    yield from read(**kwargs)


def build_table(read: Callable[..., Iterator[dict]], path: Path, features: Any, **kwargs: Any):
    """The Arrow table of the rows `read(path=..., **kwargs)` yields, written once to the datasets cache
    and memory-mapped; a user error inside the reader comes out as itself."""
    from datasets import Dataset, disable_progress_bars
    from datasets.exceptions import DatasetGenerationError

    disable_progress_bars()
    try:
        return Dataset.from_generator(_generate, features=features, gen_kwargs={
            "read": read, "stamp": file_stamp(path), "path": str(path), **kwargs})
    except DatasetGenerationError as error:
        cause = error.__cause__ or error.__context__
        while cause is not None and not isinstance(cause, LmforgeError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise


class ArrowRows(Sequence):
    """A memory-mapped table seen as a sequence of examples: `make(row)` builds one when it is asked for."""

    def __init__(self, table: Any, make: Callable[[dict], Any], source: dict | None = None) -> None:
        self.table, self.make, self.source = table, make, source or {}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return ArrowRows(self.table.select(range(*index.indices(len(self)))), self.make, self.source)
        return self.make(self.table[int(index)])

    def __iter__(self) -> Iterator[Any]:
        for batch in self.table.iter(batch_size=ROWS_PER_BATCH):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns), strict=True):
                yield self.make(dict(zip(columns, values, strict=True)))

    def select(self, indices: np.ndarray) -> ArrowRows:
        return ArrowRows(self.table.select(indices), self.make, self.source)

    def materialise(self) -> list:
        """The rows as a list of examples (for small splits: validation, test)."""
        return list(self)

    @property
    def indices(self) -> np.ndarray:
        """The rows' numbers in the table they were selected from."""
        mapping = self.table._indices
        if mapping is None:
            return np.arange(len(self.table))
        return mapping.column(0).to_numpy()


@dataclass
class FeatureRows:
    """Tokenised features in a memory-mapped table: `rows(indices)` hands a batch over as feature dicts;
    `lengths` is every row's token count (for length-grouped batches)."""

    table: Any

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        row = self.table[int(index)]
        return {k: v for k, v in row.items() if k != "length"}

    def __iter__(self) -> Iterator[dict]:
        for index in range(len(self)):
            yield self[index]

    def rows(self, indices: Sequence[int]) -> list[dict]:
        batch = self.table[list(indices)]
        keys = [k for k in batch if k != "length"]
        return [dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True)]

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.table.data.column("length").to_numpy(), dtype=np.int64)  # `tokenised` leaves no indices


def take_features(features: Sequence[dict], indices: Sequence[int]) -> list[dict]:
    """The features of a batch, read lazily from a table when they live in one."""
    return features.rows(indices) if isinstance(features, FeatureRows) else [features[i] for i in indices]


def feature_lengths(features: Sequence[dict]) -> Sequence[int]:
    return features.lengths if isinstance(features, FeatureRows) else [len(f["input_ids"]) for f in features]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable hash of a tokenizer's vocabulary and rules (its JSON), for the tokenisation cache key."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256((text + json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)).encode()
                          ).hexdigest()[:16]


def tokenised(rows: ArrowRows, encode_batch: Callable[[dict], dict], features: Any, key: dict, num_proc: int = 1
              ) -> FeatureRows:
    """`rows` tokenised with `encode_batch(columns) -> columns` through `Dataset.map`, cached under a fingerprint
    of the rows and `key` (tokenizer, settings): a second run with the same inputs reads the cache."""
    from datasets import disable_progress_bars

    disable_progress_bars()
    fingerprint = hashlib.sha256(json.dumps([rows.table._fingerprint, key], sort_keys=True, default=str).encode()
                                 ).hexdigest()[:32]
    table = rows.table.flatten_indices() if rows.table._indices is not None else rows.table
    mapped = table.map(encode_batch, batched=True, batch_size=ROWS_PER_BATCH, remove_columns=table.column_names,
                       features=features, new_fingerprint=fingerprint, num_proc=num_proc if num_proc > 1 else None,
                       desc="tokenising")
    return FeatureRows(mapped)


def record_source(rows: ArrowRows, path: Path) -> None:
    """Write where a split's rows come from (source file stamp and row numbers) instead of a copy of them."""
    from lmforge.files import atomic_write_with

    path.parent.mkdir(parents=True, exist_ok=True)
    indices = path.with_name(f"{path.name.removesuffix('.jsonl')}.indices.npy")
    atomic_write_with(indices, lambda tmp: np.save(tmp, rows.indices))
    write_source(path, rows.source | {"rows": len(rows), "indices": indices.name})


def write_source(path: Path, record: dict) -> None:
    """`record` (where a split's rows come from) as NAME.source.json beside the split's `path` (NAME.jsonl)."""
    from lmforge.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path.with_name(f"{path.name.removesuffix('.jsonl')}.source.json"),
                      json.dumps(record, indent=1) + "\n")


def check_source_unchanged(run_dir: Path) -> None:
    """Before --resume: every split recorded by source must still be the file it was (size, modification time)."""
    for recorded in sorted((Path(run_dir) / "data").glob("*.source.json")):
        source = json.loads(recorded.read_text(encoding="utf-8"))
        path = Path(source["path"])
        if not path.is_file():
            raise DataError(f"{recorded}: the training data {path} is gone; put it back to resume this run")
        now = file_stamp(path)
        if (now["size"], now["mtime_ns"]) != (source["size"], source["mtime_ns"]):
            raise DataError(f"{path} changed since the run started ({recorded} records its size and time); resuming "
                            "would train on other rows — restore the file or start a new run")


def use_arrow(setting: bool | str, path: Path, min_mb: float) -> bool:
    """Whether the training file goes through Arrow: `data.arrow` true/false, or auto by its size."""
    if setting != "auto":
        return bool(setting)
    return path.is_file() and os.path.getsize(path) >= min_mb * 2**20
