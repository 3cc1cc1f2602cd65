"""The paired bootstrap of a BLEU difference: exact on identical systems, signed by the better system,
consistent with sacrebleu's own corpus BLEU, and strict about mismatched inputs."""

from __future__ import annotations

import pytest
import sacrebleu

from lmforge.metrics.generation import paired_bleu_difference

REFERENCES = [f"the {a} dog runs across the {b} field" for a in ("black", "brown", "small", "old", "white")
              for b in ("green", "wide", "dry", "open")]
GOOD = list(REFERENCES)
GOOD[::3] = [r.replace("dog", "cat") for r in REFERENCES[::3]]  # every third sentence has one word wrong
POOR = [r.replace("runs across", "sits in") for r in REFERENCES]


def test_identical_systems_differ_by_exactly_zero():
    result = paired_bleu_difference(POOR, POOR, REFERENCES, resamples=200)
    assert result.difference == result.low == result.high == 0.0
    assert result.p_not_better == 1.0


def test_difference_matches_sacrebleu_and_its_sign_follows_the_better_system():
    expected = sacrebleu.corpus_bleu(GOOD, [REFERENCES]).score - sacrebleu.corpus_bleu(POOR, [REFERENCES]).score
    better = paired_bleu_difference(POOR, GOOD, REFERENCES, resamples=200)
    assert better.difference == pytest.approx(expected)
    assert 0 < better.low <= better.difference <= better.high
    assert better.p_not_better == 0.0
    worse = paired_bleu_difference(GOOD, POOR, REFERENCES, resamples=200)
    assert worse.difference == pytest.approx(-expected)
    assert worse.high < 0 and worse.p_not_better == 1.0


def test_same_seed_same_interval_and_unicode_text():
    french = ["un chien noir court sur l'herbe", "une fille à vélo", "deux hommes jouent aux échecs"]
    hypotheses = ["un chien noir court", "une fille à vélo", "deux hommes jouent"]
    first = paired_bleu_difference(hypotheses, french, french, resamples=300, seed=3)
    assert first == paired_bleu_difference(hypotheses, french, french, resamples=300, seed=3)
    assert first.difference > 0


@pytest.mark.parametrize("sizes", [(2, 3, 3), (3, 2, 3), (0, 0, 0)])
def test_mismatched_or_empty_inputs_are_refused(sizes):
    baseline, system, references = (["a b c"] * n for n in sizes)
    with pytest.raises(ValueError, match="need the same number"):
        paired_bleu_difference(baseline, system, references)
