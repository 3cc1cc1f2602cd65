"""Generation examples: source → target pairs (jsonl/csv/tsv columns, or two aligned text files) and
chat dialogues (a list of {role, content} turns whose last assistant turn is the target)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import read_lines, read_records
from lmforge.errors import DataError

ROLES = ("system", "user", "assistant")


@dataclass
class GenerationExample:
    """A prompt (`source`, or `messages` ending before the reply) and the reply to learn (`target`, None when unlabelled)."""

    source: str | None
    target: str | None
    where: str  # "file, line N", for error messages
    messages: list[dict[str, str]] | None = None  # dialogue turns before the target reply
    references: list[str] | None = None  # every reference when the row gave several (target is the first)
    task: str | None = None  # which task the row belongs to (multi-task data: the row's "task" field)
    form: str | None = None  # the chat form the row came in (openai, sharegpt, alpaca); None for source/target

    def to_record(self) -> dict:
        record: dict = {"task": self.task} if self.task is not None else {}
        record |= {"messages": self.messages} if self.messages is not None else {"source": self.source}
        target = self.references if self.references else self.target
        return record | ({"target": target} if target is not None else {})

    def all_references(self) -> list[str]:
        """The references to score against: all of them, or the one target."""
        return list(self.references) if self.references else [self.target] if self.target is not None else []


def split_references(value: object) -> tuple[str | None, list[str] | None]:
    """(target, references) of a target column: one string, or a list of them (several references; the
    first is learnt). Anything else gives (None, None).

    >>> split_references(["A cat.", "A kitten."])
    ('A cat.', ['A cat.', 'A kitten.'])
    """
    if isinstance(value, str):
        return (value, None) if value.strip() else (None, None)
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return value[0], list(value)
    return None, None


def reference_list(value: object) -> list[str] | None:
    """Every reference a target/caption column holds (a string or a list of strings), or None when it holds none.

    >>> reference_list("A cat.")
    ['A cat.']
    """
    first, references = split_references(value)
    return references or ([first] if first else None)


def _dialogue(turns: object, labelled: bool) -> tuple[list[dict[str, str]], str | None] | str:
    """(turns before the reply, reply) of a chat, or the reason it is malformed."""
    if not isinstance(turns, list) or not turns:
        return "messages must be a non-empty list of {\"role\": ..., \"content\": ...} turns"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            return f"turn {i + 1} must be {{\"role\": one of {'/'.join(ROLES)}, \"content\": text}}"
    if labelled:
        if turns[-1]["role"] != "assistant":
            return "the last turn must be the assistant's reply to learn"
        if not turns[-1]["content"].strip():
            return "empty target: the last assistant turn has no text"
        return [dict(t) for t in turns[:-1]], turns[-1]["content"]
    history = turns[:-1] if turns[-1]["role"] == "assistant" else turns
    return [dict(t) for t in history], None


SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bot": "assistant", "model": "assistant"}


def sharegpt_messages(conversations: object) -> list[dict[str, str]] | str:
    """ShareGPT's `conversations` ([{from, value}]) as OpenAI messages, or the reason they are malformed."""
    if not isinstance(conversations, list) or not conversations:
        return "conversations must be a non-empty list of {\"from\": ..., \"value\": ...} turns"
    messages = []
    for i, turn in enumerate(conversations):
        role = SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("value"), str):
            return (f"conversations turn {i + 1} must be {{\"from\": one of {'/'.join(SHAREGPT_ROLES)}, "
                    "\"value\": text}")
        messages.append({"role": role, "content": turn["value"]})
    return messages


def alpaca_messages(record: dict) -> list[dict[str, str]] | str:
    """An Alpaca row ({instruction, input?, output}) as a user turn and the assistant's reply."""
    instruction, extra, output = record.get("instruction"), record.get("input") or "", record.get("output")
    if not isinstance(instruction, str) or not instruction.strip() or not isinstance(extra, str):
        return "instruction must be text (and input, when given)"
    if output is not None and not isinstance(output, str):
        return "output must be text"
    user = {"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction}
    return [user] + ([{"role": "assistant", "content": output}] if output is not None else [])


def chat_form(record: dict, messages_column: str) -> tuple[str, object] | None:
    """(form, turns) of a chat row — OpenAI `messages`, ShareGPT `conversations` or Alpaca
    `instruction`/`input`/`output` — or None for a source/target row."""
    if messages_column in record:
        return "openai", record[messages_column]
    if "conversations" in record:
        return "sharegpt", sharegpt_messages(record["conversations"])
    if "instruction" in record and ("output" in record or "input" in record):
        return "alpaca", alpaca_messages(record)
    return None


def read_generation(path: str, source_column: str, target_column: str, messages_column: str, errors: RowErrors,
                    labelled: bool, fmt: str = "auto", task_column: str = "task") -> list[GenerationExample]:
    """Rows with a source and target column, or with a messages column (chat); a `task_column` string, when
    present, names the row's task."""
    return list(iter_generation(path, source_column, target_column, messages_column, errors, labelled, fmt, task_column))


def iter_generation(path: str, source_column: str, target_column: str, messages_column: str, errors: RowErrors,
                    labelled: bool, fmt: str = "auto", task_column: str = "task") -> Iterator[GenerationExample]:
    """The examples of `read_generation`, one at a time."""
    for number, record in read_records(path, fmt, errors):
        where = f"{path}, line {number}"
        task = record.get(task_column)
        if task is not None and (not isinstance(task, str) or not task.strip()):
            errors.report(where, f"column '{task_column}' must be a task name (a non-empty string)")
            continue
        chat = chat_form(record, messages_column)
        if chat is not None:
            form, turns = chat
            parsed = turns if isinstance(turns, str) else _dialogue(turns, labelled)
            if isinstance(parsed, str):
                errors.report(where, f"{parsed} ({form} chat row)")
                continue
            yield GenerationExample(None, parsed[1], where, parsed[0], task=task, form=form)
            continue
        source = record.get(source_column)
        if not isinstance(source, str) or not source.strip():
            errors.report(where, f"no text under '{source_column}': give the input there or '{messages_column}' "
                                 "turns (a config can name another field with task.source_column)")
            continue
        target, references = split_references(record.get(target_column))
        if labelled and target is None:
            errors.report(where, f"empty target: no text under '{target_column}': give the reference there, a list "
                                 "of strings for several (a config can name another field with task.target_column)")
            continue
        yield GenerationExample(source, target if labelled else None, where,
                                references=references if labelled else None, task=task)


def read_parallel(source_path: str, target_path: str | None, errors: RowErrors) -> list[GenerationExample]:
    """Aligned plain-text files (`.gz` allowed), one segment per line: line N of each file is a pair."""
    if target_path is None:
        return [GenerationExample(line, None, f"{source_path}, line {n}") for n, line in read_lines(source_path) if line.strip()]
    examples = []
    for source_line, target_line in zip_longest(read_lines(source_path), read_lines(target_path)):
        if source_line is None or target_line is None:
            longer, shorter = (target_path, source_path) if source_line is None else (source_path, target_path)
            raise DataError(f"{longer} has more lines than {shorter}; parallel files must be aligned line by line")
        (number, source), (_, target) = source_line, target_line
        where = f"{source_path}, line {number}"
        if not source.strip():
            errors.report(where, "empty source line")
        elif not target.strip():
            errors.report(f"{target_path}, line {number}", "empty target line")
        else:
            examples.append(GenerationExample(source, target, where))
    return examples


def load_saved(path: Path) -> list[GenerationExample]:
    """Examples written with `to_record` (the run directory's data/*.jsonl)."""
    examples = []
    for number, record in read_records(path):
        where = f"{path}, line {number}"
        target, references = split_references(record.get("target"))
        examples.append(GenerationExample(record.get("source"), target, where, record.get("messages"), references,
                                          record.get("task")))
    return examples
