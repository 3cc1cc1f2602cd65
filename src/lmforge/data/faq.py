"""FAQ files (question, answer rows) and the system message that grounds a chat in some of their entries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import DataError

INSTRUCTIONS = ("You are a customer-service assistant. Answer the customer's question using the FAQ entries "
                "below; if they do not cover it, say you will pass the question on to a colleague.")
NOT_COVERED = "I'm sorry, I don't have that information. I will pass your question on to a colleague."


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str


def read_faq(path: str | Path) -> list[FaqEntry]:
    """FAQ entries from a jsonl / csv / tsv file with `question` and `answer` columns."""
    from lmforge.data.readers import read_records  # readers know packaged datasets, which use this module

    entries = []
    for number, row in read_records(path):
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{path}, line {number}: an FAQ row needs non-empty 'question' and 'answer' texts")
        entries.append(FaqEntry(question.strip(), answer.strip()))
    if not entries:
        raise DataError(f"{path}: no FAQ entries; give rows with 'question' and 'answer'")
    return entries


def grounding_message(entries: list[FaqEntry], instructions: str = INSTRUCTIONS) -> str:
    """The system message that puts `entries` in front of a conversation."""
    faq = "\n".join(f"Q: {entry.question}\nA: {entry.answer}" for entry in entries) or "(no entry matches)"
    return f"{instructions}\n\nFAQ:\n{faq}"
