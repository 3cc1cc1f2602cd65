"""Relation examples: a sentence with its two entities marked, read from jsonl.

Entities are given inline (`<e1>Paris</e1> is in <e2>France</e2>`) or as character spans
(`head: {start, end}`, `tail: {start, end}`); either way they become [E1] … [/E1] and [E2] … [/E2].
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import read_records

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
INLINE = re.compile(r"<(/?)e([12])>")


@dataclass
class RelationExample:
    text: str  # with [E1]/[E2] markers in place
    label: str | None
    where: str


def mark_spans(text: str, head: tuple[int, int], tail: tuple[int, int]) -> str:
    """Insert the markers around two character spans.

    >>> mark_spans("Paris is in France", (0, 5), (12, 18))
    '[E1] Paris [/E1] is in [E2] France [/E2]'
    """
    inserts = sorted([(head[0], "[E1] "), (head[1], " [/E1]"), (tail[0], "[E2] "), (tail[1], " [/E2]")], reverse=True)
    for position, marker in inserts:
        text = text[:position] + marker + text[position:]
    return text


def mark_entities(record: dict, text_column: str) -> str:
    text = record.get(text_column)
    if text is not None and not isinstance(text, str):
        raise ValueError(f"column '{text_column}' holds {type(text).__name__} {json.dumps(text)[:40]}, not text; write it as "
                         "a JSON string")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty text in column '{text_column}'")
    if "head" in record or "tail" in record:
        spans = []
        for name in ("head", "tail"):
            span = record.get(name)
            if not isinstance(span, dict) or not {"start", "end"} <= set(span):
                raise ValueError(f"'{name}' must be {{\"start\": …, \"end\": …}} character offsets")
            if not 0 <= span["start"] < span["end"] <= len(text):
                raise ValueError(f"'{name}' span {span['start']}–{span['end']} is outside the text")
            spans.append((span["start"], span["end"]))
        return mark_spans(text, spans[0], spans[1])
    found = [m.group(0) for m in INLINE.finditer(text)]
    if sorted(found) != sorted(["<e1>", "</e1>", "<e2>", "</e2>"]):
        missing = [t for t in ("<e1>", "</e1>", "<e2>", "</e2>") if t not in found]
        raise ValueError(f"entity marker {missing[0] if missing else 'repeated'} missing: mark both entities "
                         "as <e1>…</e1> and <e2>…</e2>, or give head/tail character spans")
    return INLINE.sub(lambda m: f" [{'/' if m.group(1) else ''}E{m.group(2)}] ", text).strip()


def read_relations(path: str | Path, text_column: str, label_column: str, errors: RowErrors,
                   labelled: bool = True) -> list[RelationExample]:
    examples = []
    for number, record in read_records(path, "jsonl", errors):
        where = f"{path}, line {number}"
        try:
            text = mark_entities(record, text_column)
        except ValueError as exc:
            errors.report(where, str(exc))
            continue
        label = record.get(label_column)
        if labelled and (label is None or not str(label).strip()):
            errors.report(where, f"missing label in column '{label_column}'")
            continue
        examples.append(RelationExample(" ".join(text.split()), str(label) if labelled else None, where))
    return examples
