"""SQuAD exact match and token F1 with the official answer normalisation (v1.1/v2.0 evaluate scripts)."""

from __future__ import annotations

import collections
import re
import string

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, squeeze whitespace.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 after normalisation; an empty answer only matches an empty answer."""
    predicted, reference = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not reference:
        return float(predicted == reference)
    common = collections.Counter(predicted) & collections.Counter(reference)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """EM and F1 in percent, each the max over an example's gold answers (no gold answers = unanswerable,
    matched only by the empty prediction); HasAns/NoAns breakdowns where both kinds occur."""
    rows = []
    for prediction, answers in zip(predictions, golds, strict=True):
        answers = answers or [""]
        rows.append((max(exact_match(prediction, a) for a in answers), max(token_f1(prediction, a) for a in answers),
                     answers != [""]))
    scores = {"exact_match": 100 * _mean([r[0] for r in rows]), "f1": 100 * _mean([r[1] for r in rows])}
    has, no = [r for r in rows if r[2]], [r for r in rows if not r[2]]
    if has and no:
        scores.update({"has_answer_exact_match": 100 * _mean([r[0] for r in has]), "has_answer_f1": 100 * _mean([r[1] for r in has]),
                       "no_answer_exact_match": 100 * _mean([r[0] for r in no])})
    return scores


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
