"""Datasets that install offline as Python packages, turned into labelled rows."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import yaml

from lmforge.errors import DataError
from lmforge.packages import package_dir


def chatterbot_topics(min_per_topic: int = 20) -> list[dict[str, str]]:
    """English chatterbot-corpus utterances labelled with their topic file (ai, food, sports, …).

    Every turn of every conversation is a row; texts that occur under two topics are dropped, and
    topics with fewer than `min_per_topic` distinct texts are left out. Rows come in a fixed shuffled
    order, so the first N rows are a fair sample of all topics.
    """
    folder = package_dir("chatterbot_corpus")
    if folder is None:
        raise DataError("the demo data needs the package chatterbot-corpus: pip install --no-deps chatterbot-corpus "
                        "(`make demo` installs it)")
    topics: dict[str, set[str]] = defaultdict(set)
    for path in sorted(Path(folder, "data", "english").glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations", []):
            for turn in conversation:
                if isinstance(turn, str) and turn.strip():
                    topics[path.stem.replace("_", " ")].add(" ".join(turn.split()))
    owners: dict[str, set[str]] = defaultdict(set)
    for topic, texts in topics.items():
        for text in texts:
            owners[text].add(topic)
    rows = []
    for topic in sorted(topics):
        texts = sorted(t for t in topics[topic] if len(owners[t]) == 1)
        if len(texts) >= min_per_topic:
            rows.extend({"text": text, "label": topic} for text in texts)
    random.Random(0).shuffle(rows)
    return rows
