"""`lmforge predict RUN_DIR --input FILE|-`: labels with probabilities, one JSON object a line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import stdin_lines
from lmforge.errors import DataError
from lmforge.evaluate.inference import predict as run_predict
from lmforge.runs.load import load_trained
from lmforge.runs.run_dir import load_run_config
from lmforge.tasks.base import Task

CHUNK = 256  # rows predicted at a time, so stdin streams


def read_stdin(stream: Iterable[str], text_column: str, task: Task) -> Iterator[Any]:
    """Lines of stdin: a JSON object with the text column, or else the raw text itself."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        text = line
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"<stdin>, line {number}: invalid JSON ({exc.msg}); send one JSON object or plain text per line") from None
            text = record.get(text_column)
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"<stdin>, line {number}: no text in field '{text_column}'")
        yield task.example_from_text(text, f"<stdin>, line {number}")


def _chunks(rows: Iterator[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict(run_dir: Path, input_path: str, output: TextIO, adapter: str | None = None, device: str | None = None,
            data_overrides: list[str] | None = None) -> int:
    """Write one prediction per input row to `output` (with `adapter` switched on, on `device`; the input read
    with `data_overrides`, e.g. data.text_column=sentence); return the number written."""
    config = load_run_config(Path(run_dir), data_overrides)
    task, model, tokenizer = load_trained(Path(run_dir), config, adapter, device)
    if input_path == "-":
        column = getattr(task, "input_column", None) or config.data.text_column  # generation reads its source column
        rows: Iterator[Any] = read_stdin(stdin_lines(), column, task)
    else:
        rows = iter(task.read_file(input_path, config.data, RowErrors(config.data.on_error), labelled=False))
    written = 0
    for chunk in _chunks(rows):
        features = task.encode(chunk, tokenizer, config.data.max_length)
        predictions = run_predict(task, model, features, chunk, config.train.eval_batch_size, tokenizer.pad_token_id,
                                  config.train.precision)
        for prediction in predictions:
            output.write(json.dumps(prediction, ensure_ascii=False) + "\n")
            written += 1
        output.flush()
    return written
