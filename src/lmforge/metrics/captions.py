"""COCO caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D, as the COCO caption evaluation computes them.

Captions are tokenised like the reference toolkit (pycocoevalcap: Stanford's PTB tokenizer, lower-cased,
punctuation tokens dropped) by `ptb_tokenize`, a Python re-implementation, so no Java is needed; the
scores follow the reference code's arithmetic exactly (closest reference length and its smoothing
constants for BLEU, β = 1.2 for ROUGE-L, σ = 6 and document frequencies over the evaluated references
for CIDEr-D). Scores are on a 0–100 scale.

>>> round(caption_scores(["a cat on a mat"], [["a cat on a mat", "a cat sits on the mat"]])["bleu_1"], 1)
100.0
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")
PUNCTUATION = frozenset({"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":", "-", "--",
                         "...", ";"})
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"], "wanna": ["wan", "na"]}
_CONTRACTION = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_TOKEN = re.compile(r"""
    \d+(?:[.,:/]\d+)+                                                # 3.5  1,000  10:30  1/2
  | (?:[A-Za-z]\.){2,}                                              # U.S.  a.m.
  | (?i:st|ave|dr|mr|mrs|ms|jr|sr|mt|ft|blvd|rd|inc|ltd|vs|etc)\.    # abbreviations keep their period
  | [A-Z]\.(?!\w)                                                   # initials: N. Astor
  | [\w'&]+(?:[-/.@][\w'&]+)*                                        # words, t-shirt, and/or, o'clock
  | \.\.\.|--|``|''
  | \S                                                              # any other symbol on its own
""", re.VERBOSE)


def ptb_tokenize(text: str) -> list[str]:
    """Lower-cased PTB tokens of `text` without punctuation, as the COCO caption evaluation sees it.

    >>> ptb_tokenize("A man's bike, parked (outside) on St. Mark's.")
    ['a', 'man', "'s", 'bike', 'parked', 'outside', 'on', 'st.', 'mark', "'s"]
    """
    tokens: list[str] = []
    for token in _TOKEN.findall(text.replace('"', " '' ")):
        token = _BRACKETS.get(token, token.lower())
        if token.startswith("'") and len(token) > 1 and not _CONTRACTION.match("x" + token):
            token = token[1:]  # an opening quote
        if token.endswith("'") and len(token) > 1:
            tokens.append(token[:-1])
            token = "'"
        match = _CONTRACTION.match(token)
        parts = [match.group(1), match.group(2)] if match else _SPLIT_WORDS.get(token, [token])
        tokens.extend(part for part in parts if part and part not in PUNCTUATION)
    return tokens


def _ngrams(tokens: Sequence[str], n: int = 4) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))


def coco_bleu(hypotheses: Sequence[list[str]], references: Sequence[Sequence[list[str]]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n over tokenised captions: clipped counts, the closest reference length (ties to the
    shorter), and the reference toolkit's smoothing constants (1e-15 over 1e-9)."""
    correct, guess = [0] * n, [0] * n
    test_length = ref_length = 0
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        counts, best = _ngrams(hypothesis, n), Counter()
        for ref in refs:
            best |= _ngrams(ref, n)
        for ngram, count in counts.items():
            correct[len(ngram) - 1] += min(best[ngram], count)
        for k in range(n):
            guess[k] += max(0, len(hypothesis) - k)
        test_length += len(hypothesis)
        ref_length += min((abs(len(ref) - len(hypothesis)), len(ref)) for ref in refs)[1]
    scores, product = [], 1.0
    brevity = (test_length + 1e-15) / (ref_length + 1e-9)
    for k in range(n):
        product *= (correct[k] + 1e-15) / (guess[k] + 1e-9)
        score = product ** (1 / (k + 1))
        scores.append(score * (math.exp(1 - 1 / brevity) if brevity < 1 else 1.0))
    return scores


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def coco_rouge_l(hypothesis: list[str], references: Sequence[list[str]], beta: float = 1.2) -> float:
    """Sentence ROUGE-L F_β with precision and recall each maximised over the references."""
    hypothesis = hypothesis or [""]  # the reference code splits "" into one empty token
    lcs = [_lcs([*ref] or [""], hypothesis) for ref in references]
    precision = max(common / len(hypothesis) for common in lcs)
    recall = max(common / max(len(ref), 1) for common, ref in zip(lcs, references, strict=True))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def coco_cider_d(hypotheses: Sequence[list[str]], references: Sequence[Sequence[list[str]]], n: int = 4,
                 sigma: float = 6.0) -> list[float]:
    """Per-caption CIDEr-D (Vedantam et al. 2015): tf-idf n-gram cosine with clipped hypothesis weights and a
    Gaussian length penalty, document frequencies taken over these references. Like the reference code,
    the "length" in the penalty counts bigrams."""
    ref_counts = [[_ngrams(ref, n) for ref in refs] for refs in references]
    frequency: Counter[tuple[str, ...]] = Counter()
    for counts in ref_counts:
        frequency.update(set().union(*counts))
    log_images = math.log(float(len(references)))

    def vector(counts: Counter) -> tuple[list[dict], list[float], int]:
        weights: list[dict] = [{} for _ in range(n)]
        for ngram, count in counts.items():
            weights[len(ngram) - 1][ngram] = count * (log_images - math.log(max(1.0, frequency[ngram])))
        norms = [math.sqrt(sum(w * w for w in level.values())) for level in weights]
        return weights, norms, sum(count for ngram, count in counts.items() if len(ngram) == 2)

    scores = []
    for hypothesis, refs in zip(hypotheses, ref_counts, strict=True):
        hyp, hyp_norm, hyp_length = vector(_ngrams(hypothesis, n))
        total = 0.0
        for counts in refs:
            ref, ref_norm, ref_length = vector(counts)
            penalty = math.exp(-((hyp_length - ref_length) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(min(w, ref[k].get(g, 0.0)) * ref[k].get(g, 0.0) for g, w in hyp[k].items())
                if hyp_norm[k] and ref_norm[k]:
                    dot /= hyp_norm[k] * ref_norm[k]
                total += dot * penalty / n
        scores.append(10.0 * total / len(refs))
    return scores


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D (0–100) of one caption per image against that image's references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} captions for {len(references)} reference sets")
    if not hypotheses:
        return dict.fromkeys(CAPTION_METRICS, 0.0)
    if any(not refs for refs in references):
        raise ValueError("every image needs at least one reference caption")
    hyps = [ptb_tokenize(text) for text in hypotheses]
    refs = [[ptb_tokenize(text) for text in texts] for texts in references]
    bleu = coco_bleu(hyps, refs)
    rouge = [coco_rouge_l(hyp, ref) for hyp, ref in zip(hyps, refs, strict=True)]
    cider = coco_cider_d(hyps, refs)
    return {f"bleu_{k + 1}": 100 * score for k, score in enumerate(bleu)} | {
        "rouge_l": 100 * sum(rouge) / len(rouge), "cider": 100 * sum(cider) / len(cider)}
