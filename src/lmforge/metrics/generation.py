"""Corpus BLEU and chrF (sacrebleu), ROUGE F1 (rouge-score) and exact match, all on a 0–100 scale; and the
paired bootstrap interval of a BLEU difference between two systems."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sacrebleu
from sacrebleu.metrics import BLEU

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def generation_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """BLEU, chrF, mean ROUGE-1/2/L F1 and exact match (after stripping, case-insensitive) of `hypotheses`
    against one reference each.

    ROUGE uses rouge-score's default tokenizer (lower-cased ASCII words), which suits English; for
    other languages read BLEU and chrF.

    >>> round(generation_scores(["a cat sat on the mat"], ["a cat sat on the mat"])["bleu"], 2)
    100.0
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not hypotheses:
        return {"bleu": 0.0, "chrf": 0.0} | {name: 0.0 for name in ROUGE_TYPES} | {"exact_match": 0.0}
    scores = {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, [references]).score),
    }
    from rouge_score import rouge_scorer  # (it imports nltk and scikit-learn: ~100 MB a server never needs)

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        for name, score in scorer.score(reference, hypothesis).items():
            totals[name] += score.fmeasure
    scores |= {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}
    same = sum(h.strip().casefold() == r.strip().casefold() for h, r in zip(hypotheses, references, strict=True))
    scores["exact_match"] = 100.0 * same / len(hypotheses)
    return scores


class BleuDifference(NamedTuple):
    """Corpus BLEU of `system` minus that of `baseline`, its 95% paired-bootstrap interval, and the share of
    resamples in which the system is not better (a one-sided p-value)."""

    difference: float
    low: float
    high: float
    p_not_better: float


def paired_bleu_difference(baseline: list[str], system: list[str], references: list[str], resamples: int = 1000,
                           seed: int = 0) -> BleuDifference:
    """Paired bootstrap (Koehn 2004) over sentences: both systems' corpus BLEU on the same resampled sentences,
    from sacrebleu's per-sentence n-gram statistics, so a resample costs a sum rather than a re-tokenisation.

    >>> paired_bleu_difference(["a cat"] * 3, ["a cat"] * 3, ["a cat"] * 3).difference
    0.0
    """
    if not len(baseline) == len(system) == len(references) > 0:
        raise ValueError(f"{len(baseline)} baseline, {len(system)} system and {len(references)} reference "
                         "sentences: need the same number, at least one")
    corpus_bleu, sentence_bleu = BLEU(), BLEU(effective_order=True)  # the second only counts n-grams

    def statistics(hypothesis: str, reference: str) -> list[int]:
        score = sentence_bleu.sentence_score(hypothesis, [reference])
        return [score.sys_len, score.ref_len, *score.counts, *score.totals]

    stats = [np.asarray([statistics(h, r) for h, r in zip(hypotheses, references, strict=True)], dtype=np.int64)
             for hypotheses in (baseline, system)]
    order = corpus_bleu.max_ngram_order

    def corpus(rows: np.ndarray) -> float:
        sys_len, ref_len, *rest = rows.sum(0).tolist()
        return BLEU.compute_bleu(rest[:order], rest[order:], sys_len, ref_len, corpus_bleu.smooth_method,
                                 corpus_bleu.smooth_value, max_ngram_order=order).score

    difference = corpus(stats[1]) - corpus(stats[0])
    rng = np.random.default_rng(seed)
    samples = np.sort([corpus(stats[1][pick]) - corpus(stats[0][pick])
                       for pick in rng.integers(0, len(references), size=(resamples, len(references)))])
    return BleuDifference(difference, float(samples[int(0.025 * resamples)]), float(samples[int(0.975 * resamples)]),
                          float((samples <= 0).mean()))
