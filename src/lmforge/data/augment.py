"""EDA-style text augmentation (Wei & Zou 2019): synonym replacement, random insertion, swap and deletion.

Synonyms are nearest neighbours in a pretrained model's embedding space (no WordNet needed offline),
passed in as a word -> neighbour mapping. Each operation changes about `rate` of the words.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Operation = Callable[[list[str], random.Random, dict[str, str], int], list[str]]


def synonym_replacement(words: list[str], rng: random.Random, neighbours: dict[str, str], count: int) -> list[str]:
    """Replace up to `count` words that have a neighbour by it."""
    out = list(words)
    candidates = [i for i, w in enumerate(out) if w.lower() in neighbours]
    for i in rng.sample(candidates, min(count, len(candidates))):
        out[i] = neighbours[out[i].lower()]
    return out


def random_insertion(words: list[str], rng: random.Random, neighbours: dict[str, str], count: int) -> list[str]:
    """Insert the neighbour of a random word at a random position, `count` times."""
    out = list(words)
    for _ in range(count):
        candidates = [w for w in out if w.lower() in neighbours]
        if not candidates:
            break
        out.insert(rng.randrange(len(out) + 1), neighbours[rng.choice(candidates).lower()])
    return out


def random_swap(words: list[str], rng: random.Random, neighbours: dict[str, str], count: int) -> list[str]:
    """Swap two random positions, `count` times."""
    out = list(words)
    for _ in range(count if len(out) > 1 else 0):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], rng: random.Random, neighbours: dict[str, str], count: int) -> list[str]:
    """Delete each word with probability count / len(words); never return nothing."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() >= count / len(words)]
    return kept or [rng.choice(words)]


OPERATIONS: dict[str, Operation] = {"synonym": synonym_replacement, "insert": random_insertion,
                                    "swap": random_swap, "delete": random_deletion}


def eda(text: str, rng: random.Random, neighbours: dict[str, str], rate: float = 0.1,
        operation: str | None = None) -> tuple[str, str]:
    """(augmented text, operation name): one EDA operation (random unless named) on whitespace words."""
    words = text.split()
    name = operation or rng.choice(sorted(OPERATIONS))
    count = max(1, round(rate * len(words)))
    return " ".join(OPERATIONS[name](words, rng, neighbours, count)), name
