"""Corpus BLEU and chrF (sacrebleu), ROUGE F1 (rouge-score) and exact match, all on a 0–100 scale."""

from __future__ import annotations

import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def generation_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """BLEU, chrF, mean ROUGE-1/2/L F1 and exact match (after stripping, case-insensitive) of `hypotheses`
    against one reference each.

    ROUGE uses rouge-score's default tokenizer (lower-cased ASCII words), which suits English; for
    other languages read BLEU and chrF.

    >>> generation_scores(["a cat sat on the mat"], ["a cat sat on the mat"])["bleu"]
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
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        for name, score in scorer.score(reference, hypothesis).items():
            totals[name] += score.fmeasure
    scores |= {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}
    same = sum(h.strip().casefold() == r.strip().casefold() for h, r in zip(hypotheses, references, strict=True))
    scores["exact_match"] = 100.0 * same / len(hypotheses)
    return scores
