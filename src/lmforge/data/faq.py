"""FAQ files: question, answer rows read into `FaqEntry`s (what grounds a chat in them is grounding.py)."""

from __future__ import annotations

from pathlib import Path

from lmforge.data.grounding import FaqEntry
from lmforge.data.readers import read_records
from lmforge.errors import DataError


def read_faq(path: str | Path) -> list[FaqEntry]:
    """FAQ entries from a jsonl / csv / tsv file with `question` and `answer` columns."""
    entries = []
    for number, row in read_records(path):
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{path}, line {number}: an FAQ row needs non-empty 'question' and 'answer' texts")
        entries.append(FaqEntry(question.strip(), answer.strip()))
    if not entries:
        raise DataError(f"{path}: no FAQ entries; give rows with 'question' and 'answer'")
    return entries
