"""CoNLL-style column files (one token a line, tag in the last column, blank line between sentences),
and conversion between the BIO (IOB2), IOB1 and IOBES tagging schemes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.data.errors_policy import RowErrors
from lmforge.data.readers import locate, open_text
from lmforge.errors import DataError

WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


@dataclass
class TaggedSentence:
    """Words with one BIO tag each (empty tags for unlabelled input) and their character offsets."""

    tokens: list[str]
    tags: list[str]
    where: str  # "file, line N" of the sentence's first token
    text: str = ""
    offsets: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.text:  # pre-tokenised input: the text is the words joined by spaces
            self.text = " ".join(self.tokens)
            position, self.offsets = 0, []
            for token in self.tokens:
                self.offsets.append((position, position + len(token)))
                position += len(token) + 1


def split_words(text: str, where: str) -> TaggedSentence:
    """Raw text → words (runs of letters/digits, or single punctuation marks) with character offsets.

    >>> split_words("Paris, France", "").tokens
    ['Paris', ',', 'France']
    """
    matches = list(WORD.finditer(text))
    return TaggedSentence([m.group() for m in matches], [], where, text, [(m.start(), m.end()) for m in matches])


def read_conll(path: str | Path, errors: RowErrors | None = None, scheme: str = "bio") -> list[TaggedSentence]:
    """Sentences from a CoNLL file, tags converted from `scheme` to BIO.

    `-DOCSTART-` lines are skipped; every line of a file must have the same number of columns.
    """
    path = locate(path)
    errors = errors or RowErrors()
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    columns = None
    broken = False

    def close() -> None:
        nonlocal tokens, tags, broken
        if tokens and not broken:
            try:
                sentences.append(TaggedSentence(tokens, to_bio(tags, scheme), f"{path}, line {start}"))
            except ValueError as exc:
                errors.report(f"{path}, line {start}", f"{exc} (task.tag_scheme is '{scheme}')")
        tokens, tags, broken = [], [], False

    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                close()
                continue
            if parts[0] == "-DOCSTART-":
                close()
                continue
            if columns is None:
                columns = len(parts)
                if columns < 2:
                    raise DataError(f"{path}, line {number}: expected 'token ... tag' columns, found one column")
            if len(parts) != columns:
                errors.report(f"{path}, line {number}", f"expected {columns} columns like the first line, found {len(parts)}")
                broken = True
                continue
            if not tokens:
                start = number
            tokens.append(parts[0])
            tags.append(parts[-1])
    close()
    return sentences


def _split(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if not dash or prefix not in ("B", "I", "E", "S") or not kind:
        raise ValueError(f"tag '{tag}' is not O or B-/I-/E-/S-<type>")
    return prefix, kind


def to_bio(tags: list[str], scheme: str = "bio") -> list[str]:
    """Convert IOB1/IOBES/BIO tags to BIO.

    >>> to_bio(["I-PER", "I-PER", "B-PER"], "iob1")
    ['B-PER', 'I-PER', 'B-PER']
    >>> to_bio(["S-LOC", "B-ORG", "E-ORG"], "iobes")
    ['B-LOC', 'B-ORG', 'I-ORG']
    """
    out = []
    previous = ("O", "")
    for tag in tags:
        prefix, kind = _split(tag)
        if scheme == "iobes":
            prefix = {"S": "B", "E": "I"}.get(prefix, prefix)
        elif prefix in ("E", "S"):
            raise ValueError(f"tag '{tag}' belongs to IOBES, not {scheme.upper()}")
        if scheme == "iob1" and prefix == "I" and (previous[0] == "O" or previous[1] != kind):
            prefix = "B"  # IOB1 starts an entity with I- unless it follows one of the same type
        out.append("O" if prefix == "O" else f"{prefix}-{kind}")
        previous = (prefix, kind)
    return out


def from_bio(tags: list[str], scheme: str) -> list[str]:
    """Convert BIO tags to `scheme` (the inverse of `to_bio` for well-formed input)."""
    if scheme == "bio":
        return list(tags)
    out = []
    for i, tag in enumerate(tags):
        prefix, kind = _split(tag)
        following = _split(tags[i + 1]) if i + 1 < len(tags) else ("O", "")
        continues = following == ("I", kind)
        if scheme == "iobes" and prefix != "O":
            prefix = {"B": "B" if continues else "S", "I": "I" if continues else "E"}[prefix]
        elif scheme == "iob1" and prefix == "B":
            previous = _split(out[-1]) if out else ("O", "")
            prefix = "B" if previous[1] == kind and previous[0] != "O" else "I"
        out.append("O" if prefix == "O" else f"{prefix}-{kind}")
    return out
