"""Datasets that install offline as Python packages, turned into rows.

`dataset:NAME` in a data path names one of DATASETS; its rows are written once to the cache as jsonl.
"""

from __future__ import annotations

import functools
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from lmforge.data.grounding import NOT_COVERED, FaqEntry, grounding_message
from lmforge.errors import DataError
from lmforge.files import atomic_write_text
from lmforge.packages import cache_dir, package_dir

DATASET_PREFIX = "dataset:"


def _chatterbot_conversations() -> Iterator[tuple[str, list[str]]]:
    """(topic, turns) of every English chatterbot-corpus conversation, whitespace normalised."""
    folder = package_dir("chatterbot_corpus")
    if folder is None:
        raise DataError("chatterbot-corpus data needs the package: pip install --no-deps chatterbot-corpus "
                        "(`make demo` installs it)")
    for path in sorted(Path(folder, "data", "english").glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations", []):
            turns = [" ".join(turn.split()) for turn in conversation if isinstance(turn, str) and turn.strip()]
            yield path.stem.replace("_", " "), turns


def chatterbot_dialogues() -> list[dict]:
    """Chatterbot-corpus conversations as chat rows {messages: [user, assistant, …], topic}, turns alternating
    from the user; a trailing user turn is dropped. Fixed shuffled order."""
    rows = []
    for topic, turns in _chatterbot_conversations():
        turns = turns[: len(turns) // 2 * 2]
        if turns:
            roles = ["user", "assistant"] * (len(turns) // 2)
            rows.append({"messages": [{"role": r, "content": t} for r, t in zip(roles, turns, strict=True)], "topic": topic})
    random.Random(0).shuffle(rows)
    return rows


def chatterbot_topics(min_per_topic: int = 20) -> list[dict[str, str]]:
    """English chatterbot-corpus utterances labelled with their topic file (ai, food, sports, …).

    Every turn of every conversation is a row; texts that occur under two topics are dropped, and
    topics with fewer than `min_per_topic` distinct texts are left out. Rows come in a fixed shuffled
    order, so the first N rows are a fair sample of all topics.
    """
    topics: dict[str, set[str]] = defaultdict(set)
    for topic, turns in _chatterbot_conversations():
        topics[topic].update(turns)
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


def _split_reply_pairs(split: str) -> tuple[list[tuple[str, str, str]], list[int], random.Random]:
    """(every (topic, user turn, reply) pair of chatterbot-corpus, the indices of `split`'s pairs — conversations
    shuffled with seed 0 and cut 80/10/10 into train/validation/test —, the generator that shuffled them)."""
    pairs = [(topic, turns[i], turns[i + 1]) for topic, turns in _chatterbot_conversations()
             for i in range(0, len(turns) - 1, 2)]
    rng = random.Random(0)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    cut = {"train": (0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}[split]
    return pairs, order[int(cut[0] * len(order)):int(cut[1] * len(order))], rng


def chatterbot_reply_relevance(split: str, negatives: int = 4) -> list[dict[str, str]]:
    """Reply ranking from chatterbot-corpus: each user turn (`text`) with its own reply (`text_pair`, label
    `relevant`) and `negatives` other replies (`irrelevant`; one from the same topic where there is one, the
    rest from other topics). Conversations are split 80/10/10 into train/validation/test, so every query's
    candidates stay in one split."""
    pairs, chosen, rng = _split_reply_pairs(split)
    by_topic: dict[str, list[str]] = defaultdict(list)
    for topic, _, reply in pairs:
        by_topic[topic].append(reply)
    everything = [reply for _, _, reply in pairs]
    rows = []
    for index in chosen:
        topic, query, reply = pairs[index]
        near = [r for r in by_topic[topic] if r != reply]
        picked = [rng.choice(near)] if near else []
        while len(picked) < negatives:
            other = rng.choice(everything)
            if other != reply and other not in picked:
                picked.append(other)
        rows.append({"text": query, "text_pair": reply, "label": "relevant", "topic": topic})
        rows.extend({"text": query, "text_pair": r, "label": "irrelevant", "topic": topic} for r in picked)
    return rows


def chatterbot_preferences(split: str, paired: bool = True) -> list[dict]:
    """Preference rows from chatterbot-corpus: each user turn (`prompt`) with its own reply chosen and a reply of
    another topic rejected (one of three words or more, drawn with a fixed seed), or — for KTO (`paired` false) —
    one of the two as a row {prompt, completion, label}. Conversations split 80/10/10 into train/validation/test as
    the reply-ranking sets are."""
    pairs, chosen, _ = _split_reply_pairs(split)
    replies = sorted({(topic, reply) for topic, _, reply in pairs if len(reply.split()) >= 3})
    rng = random.Random(f"preferences-{split}")
    rows = []
    for index in chosen:
        topic, prompt, reply = pairs[index]
        rejected = rng.choice([r for t, r in replies if t != topic])
        if paired:
            rows.append({"prompt": prompt, "chosen": reply, "rejected": rejected, "topic": topic})
        else:
            good = rng.random() < 0.5
            rows.append({"prompt": prompt, "completion": reply if good else rejected, "label": good, "topic": topic})
    return rows


def _loosely(text: str, rng: random.Random, drop: float = 0.3) -> str:
    """`text` with about `drop` of its words left out (at least two kept), lower-cased, without end punctuation."""
    words = text.rstrip("?!.").split()
    kept = [w for w in words if rng.random() >= drop]
    return " ".join(kept if len(kept) >= 2 else words[:2]).lower()


def chatterbot_grounded_dialogues(distractors: int = 1, uncovered: float = 0.2) -> list[dict]:
    """Retrieval-augmented chat rows from chatterbot-corpus: each (user turn, reply) pair becomes a chat whose
    system message holds FAQ entries (other pairs of the corpus) as `lmforge serve --faq` writes them. Most
    rows hold the pair itself (its question loosely reworded) among `distractors` others (the reply is to be
    read off the FAQ); a share
    `uncovered` holds only others, and the reply is then to pass the question on. Fixed shuffled order."""
    pairs = [FaqEntry(turns[i], turns[i + 1]) for _, turns in _chatterbot_conversations()
             for i in range(0, len(turns) - 1, 2)]
    rng = random.Random(0)
    rows = []
    for pair in pairs:
        covered = rng.random() >= uncovered
        others = [p for p in rng.sample(pairs, distractors + 2) if p.question != pair.question][: distractors + (not covered)]
        # the entry words its question differently from the customer (some words dropped, other case), as an
        # FAQ does: the reply is to be found by meaning, not by an exact copy of the question
        entries = others + [FaqEntry(_loosely(pair.question, rng), pair.answer)] if covered else others
        rng.shuffle(entries)
        reply = pair.answer if covered else NOT_COVERED
        rows.append({"messages": [{"role": "system", "content": grounding_message(entries)},
                                  {"role": "user", "content": pair.question},
                                  {"role": "assistant", "content": reply}], "covered": covered})
    rng.shuffle(rows)
    return rows


#: `dataset:NAME` -> the function building its rows
DATASETS: dict[str, Callable[[], list[dict]]] = {
    "chatterbot-topics": chatterbot_topics,
    "chatterbot-dialogues": chatterbot_dialogues,
    "chatterbot-grounded-dialogues": chatterbot_grounded_dialogues,
    **{f"chatterbot-replies-{split}": functools.partial(chatterbot_reply_relevance, split)
       for split in ("train", "validation", "test")},
    **{f"chatterbot-preferences-{split}": functools.partial(chatterbot_preferences, split)
       for split in ("train", "validation", "test")},
    **{f"chatterbot-kto-{split}": functools.partial(chatterbot_preferences, split, False)
       for split in ("train", "validation", "test")},
}


@functools.cache
def _dataset_text(name: str) -> str:
    """A packaged dataset's jsonl text, built once per process (a data path is located several times per read)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in DATASETS[name]())


def dataset_file(name: str) -> Path:
    """A packaged dataset as jsonl in the cache, rebuilt from the installed package (cheap) and
    rewritten only when its rows changed."""
    if name not in DATASETS:
        raise DataError(f"{DATASET_PREFIX}{name}: unknown dataset; choose one of: {', '.join(DATASETS)}")
    path = cache_dir() / "data" / f"{name}.jsonl"
    text = _dataset_text(name)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path
