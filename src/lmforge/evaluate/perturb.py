"""A perturbed copy of an evaluation set, for robustness checks: character noise and swaps of words for
their nearest neighbour in the model's embedding space (among words of the training vocabulary)."""

from __future__ import annotations

import random
import re
import string

import torch
from transformers import PreTrainedTokenizerBase

WORD = re.compile(r"[A-Za-z]{3,}")


def char_noise(word: str, rng: random.Random) -> str:
    """One typo: swap two neighbouring letters, drop one, double one, or replace one."""
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1:]


def embedding_neighbours(words: set[str], tokenizer: PreTrainedTokenizerBase, embeddings: torch.Tensor) -> dict[str, str]:
    """Each word that is one token of the vocabulary -> the closest other such word (cosine of input embeddings)."""
    ids = {}
    for word in sorted(words):
        pieces = tokenizer.tokenize(word)
        if len(pieces) == 1 and pieces[0].lstrip("Ġ▁").lower() == word.lower():
            ids[word] = tokenizer.convert_tokens_to_ids(pieces[0])
    if len(ids) < 2:
        return {}
    names = list(ids)
    vectors = torch.nn.functional.normalize(embeddings[list(ids.values())].float(), dim=-1)
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(-2)
    return {name: names[int(j)] for name, j in zip(names, similarity.argmax(dim=-1), strict=True)}


def perturb(text: str, rng: random.Random, neighbours: dict[str, str], char_rate: float = 0.1,
            swap_rate: float = 0.15) -> str:
    """`text` with some words of 3+ letters swapped for their neighbour and some given a typo."""
    def change(match: re.Match) -> str:
        word = match.group(0)
        draw = rng.random()
        if draw < swap_rate and word.lower() in neighbours:
            return neighbours[word.lower()]
        if draw < swap_rate + char_rate:
            return char_noise(word, rng)
        return word

    return WORD.sub(change, text)


def vocabulary(texts: list[str]) -> set[str]:
    """Lower-cased words of 3+ letters in `texts`."""
    return {word.lower() for text in texts for word in WORD.findall(text)}
