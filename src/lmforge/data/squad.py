"""Extractive QA examples from SQuAD v1.1/v2.0 JSON or flat jsonl, with answer offsets checked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import locate, read_records
from lmforge.errors import DataError


@dataclass
class QAExample:
    """A question about a context; `answers` are (text, character start) pairs: empty when unanswerable,
    None when unlabelled (input to predict)."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] | None = None
    where: str = ""


def find_answer(context: str, text: str, start: int | None) -> tuple[int, int] | None:
    """The answer's character span in `context`: at `start` when the context holds the text there, else
    the first occurrence, else a whitespace-insensitive match; None when the text is not in the context.

    >>> find_answer("some 40 , 000 people", "40,000", None)
    (5, 13)
    """
    if start is not None and context[start:start + len(text)] == text:
        return start, start + len(text)
    if text in context:
        return context.index(text), context.index(text) + len(text)
    pattern = r"\s*".join(re.escape(ch) for ch in text if not ch.isspace())  # "40,000" matches "40 , 000"
    match = re.search(pattern, context) if pattern else None
    return match.span() if match else None


def _answers(raw, where: str, context: str, errors: RowErrors, no_answer: str | None = None) -> list[tuple[str, int]] | None:
    """Answers given as [{text, answer_start}], {text: [...], answer_start: [...]} or a list of strings."""
    if isinstance(raw, dict):
        starts = raw.get("answer_start") or [None] * len(raw.get("text", []))
        raw = [{"text": t, "answer_start": s} for t, s in zip(raw.get("text", []), starts, strict=False)]
    found = []
    for item in raw or []:
        text, start = (item, None) if isinstance(item, str) else (item.get("text"), item.get("answer_start"))
        if no_answer is not None and text == no_answer:
            return []
        if not isinstance(text, str) or not text.strip():
            errors.report(where, "an answer has no text")
            return None
        span = find_answer(context, text, start)
        if span is None:
            errors.report(where, f"answer {text!r} is not in its context")
            return None
        found.append((context[span[0]:span[1]], span[0]))
    return found


def read_qa(path: str | Path, errors: RowErrors | None = None, labelled: bool = True,
            columns: tuple[str, str, str] = ("question", "context", "answers"), no_answer: str | None = None) -> list[QAExample]:
    """Read SQuAD JSON (`{"data": [{"paragraphs": …}]}`) or jsonl rows `{id?, question, context, answers}`
    (`columns` renames question/context/answers; an empty answer string, or `no_answer`, marks an unanswerable one)."""
    question_column, context_column, answers_column = columns
    path = locate(path)
    errors = errors or RowErrors()
    if path.suffix.lower() == ".json":
        return _read_squad_json(path, errors, labelled)
    examples = []
    for number, record in read_records(path, "jsonl", errors):
        where = f"{path}, line {number}"
        question, context = record.get(question_column), record.get(context_column)
        if not isinstance(question, str) or not question.strip() or not isinstance(context, str) or not context.strip():
            errors.report(where, f"each row needs non-empty '{question_column}' and '{context_column}' strings")
            continue
        raw = record.get(answers_column, [])
        raw = ([raw] if raw.strip() else []) if isinstance(raw, str) else raw
        answers = _answers(raw, where, context, errors, no_answer) if labelled else None
        if answers is not None or not labelled:
            examples.append(QAExample(str(record.get("id", number)), question, context, answers, where))
    return examples


def _read_squad_json(path: Path, errors: RowErrors, labelled: bool) -> list[QAExample]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: expected SQuAD JSON with a top-level 'data' list (or use .jsonl rows)")
    examples = []
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                where = f"{path}, question id {qa.get('id', '?')}"
                if not labelled:
                    answers = None
                else:
                    answers = [] if qa.get("is_impossible") else _answers(qa.get("answers", []), where, context, errors)
                    if answers is None:
                        continue
                    examples.append(QAExample(str(qa.get("id")), qa.get("question", ""), context, answers, where))
    return examples
