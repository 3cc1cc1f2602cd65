"""Preference rows: paired `{prompt, chosen, rejected}` (DPO, IPO, SimPO, ORPO, reward models) and KTO's unpaired
`{prompt, completion, label}`. Each text is a string, or — TRL's conversational form — a list of OpenAI messages
(the prompt's ending with the user's turn, a completion's the assistant's reply)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import read_records, write_jsonl
from lmforge.errors import DataError

Text = str | list[dict[str, str]]  # plain text, or OpenAI messages


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt with a preferred and a dispreferred completion (`rejected` None: a KTO row, `desirable` says
    whether `chosen` is a good completion)."""

    prompt: Text
    chosen: Text
    rejected: Text | None
    where: str
    desirable: bool | None = None

    def to_record(self) -> dict[str, Any]:
        if self.rejected is None:
            return {"prompt": self.prompt, "completion": self.chosen, "label": self.desirable, "where": self.where}
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected, "where": self.where}


def _text(value: Any, field: str, where: str) -> Text:
    """A row's field as text or messages; a DataError naming the row and field otherwise."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: '{field}' is empty; every preference row needs a non-empty {field}")
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                 and isinstance(m.get("role"), str) for m in value):
        if not "".join(m["content"] for m in value).strip():
            raise DataError(f"{where}: '{field}' is empty; every preference row needs a non-empty {field}")
        return value
    if value is None:
        raise DataError(f"{where}: missing '{field}'")
    raise DataError(f"{where}: '{field}' must be text or a list of messages ({{role, content}}), got "
                    f"{type(value).__name__}")


def completion_text(value: Text, where: str) -> str:
    """A completion's text: the string, or the content of its one assistant message."""
    if isinstance(value, str):
        return value
    replies = [m for m in value if m["role"] == "assistant"]
    if len(value) != 1 or not replies:
        raise DataError(f"{where}: a completion given as messages must be one assistant message")
    return replies[0]["content"]


def read_completions(path: str, fmt: str, errors: RowErrors) -> list[PreferenceExample]:
    """Unlabelled {prompt, completion} rows, for a reward model to score (`chosen` holds the completion)."""
    rows = []
    for number, record in read_records(path, fmt, errors):
        where = f"{path}, line {number}"
        try:
            prompt = _text(record.get("prompt"), "prompt", where)
            completion = completion_text(_text(record.get("completion"), "completion", where), where)
            rows.append(PreferenceExample(prompt, completion, None, where))
        except DataError as error:
            errors.report(where, str(error).removeprefix(f"{where}: "))
    return rows


def read_preferences(path: str, fmt: str, errors: RowErrors, paired: bool) -> list[PreferenceExample]:
    """The rows of a preference file: {prompt, chosen, rejected} when `paired`, else {prompt, completion,
    label: true|false}. Rows with a missing or empty field, or chosen identical to rejected, are refused by
    line (or skipped with data.on_error=skip)."""
    return list(iter_preferences(path, fmt, errors, paired))


def iter_preferences(path: str, fmt: str, errors: RowErrors, paired: bool) -> Iterator[PreferenceExample]:
    """The rows of `read_preferences`, one at a time (data.streaming)."""
    for number, record in read_records(path, fmt, errors):
        where = f"{path}, line {number}"
        try:
            prompt = _text(record.get("prompt"), "prompt", where)
            if paired:
                if "completion" in record and "chosen" not in record:
                    raise DataError(f"{where}: a {{prompt, completion, label}} row is KTO's; use tuning.preference."
                                    "method=kto, or give {prompt, chosen, rejected} rows")
                chosen = _text(record.get("chosen"), "chosen", where)
                rejected = _text(record.get("rejected"), "rejected", where)
                if chosen == rejected:
                    raise DataError(f"{where}: 'chosen' and 'rejected' are the same; a pair must differ")
                yield PreferenceExample(prompt, chosen, rejected, where)
            else:
                completion = _text(record.get("completion"), "completion", where)
                label = record.get("label")
                if not isinstance(label, bool):
                    raise DataError(f"{where}: 'label' must be true (a desirable completion) or false, got "
                                    f"{json.dumps(label)}")
                yield PreferenceExample(prompt, completion, None, where, label)
        except DataError as error:
            errors.report(where, str(error).removeprefix(f"{where}: "))


def check_kto_labels(rows: list[PreferenceExample], where: str) -> None:
    """KTO learns from both kinds of completion: a training set with one label only is refused."""
    counts = Counter(row.desirable for row in rows)
    if len(counts) < 2:
        only = "desirable (label: true)" if True in counts else "undesirable (label: false)"
        raise DataError(f"{where}: every completion is {only}; KTO needs both desirable and undesirable ones")


def save_preferences(rows: list[PreferenceExample], path: Path) -> None:
    write_jsonl(path, [row.to_record() for row in rows])


def load_preferences(path: Path) -> list[PreferenceExample]:
    rows = []
    for _, record in read_records(path):
        completion = record.get("completion")
        rows.append(PreferenceExample(record["prompt"], record["chosen"] if completion is None else completion,
                                      record.get("rejected"), record["where"], record.get("label")))
    return rows

