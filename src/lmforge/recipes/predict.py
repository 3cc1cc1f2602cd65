"""`lmforge predict RUN_DIR --input FILE|-`: labels with probabilities, one JSON object a line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample, read_examples
from lmforge.errors import DataError
from lmforge.evaluate.inference import predict as run_predict
from lmforge.recipes.evaluate import load_trained
from lmforge.recipes.run_dir import load_run_config

CHUNK = 256  # rows predicted at a time, so stdin streams


def read_stdin(stream: TextIO, text_column: str) -> Iterator[TextExample]:
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
        yield TextExample(text=text, text_pair=None, labels=(), where=f"<stdin>, line {number}")


def _chunks(rows: Iterator[TextExample]) -> Iterator[list[TextExample]]:
    chunk: list[TextExample] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict(run_dir: Path, input_path: str, output: TextIO) -> int:
    """Write one prediction per input row to `output`; return the number written."""
    config = load_run_config(Path(run_dir))
    task, model, tokenizer = load_trained(Path(run_dir), config)
    if input_path == "-":
        rows: Iterator[TextExample] = read_stdin(sys.stdin, config.data.text_column)
    else:
        rows = iter(read_examples(input_path, config.data, config.task.multi_label, RowErrors(config.data.on_error),
                                  require_labels=False))
    written = 0
    for chunk in _chunks(rows):
        features = task.encode([TextExample(r.text, r.text_pair, (), r.where) for r in chunk], tokenizer, config.data.max_length)
        predictions = run_predict(task, model, features, config.train.eval_batch_size, tokenizer.pad_token_id, config.train.precision)
        for row, prediction in zip(chunk, predictions, strict=True):
            record = {"text": row.text} | ({"text_pair": row.text_pair} if row.text_pair is not None else {}) | prediction
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
        output.flush()
    return written
