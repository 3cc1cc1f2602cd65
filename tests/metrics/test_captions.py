"""COCO caption metrics: hand-computed cases, and MAGIC's published scores from its own outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lmforge.metrics.captions import caption_scores, coco_bleu, coco_cider_d, coco_rouge_l, ptb_tokenize

MAGIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_captions" / "magic_result.json"


@pytest.mark.parametrize("text, tokens", [
    ("A man's bike, parked (outside).", ["a", "man", "'s", "bike", "parked", "outside"]),
    ('A sign reads "No Parking" near St. Mark\'s.', ["a", "sign", "reads", "no", "parking", "near", "st.", "mark", "'s"]),
    ("I cannot see the U.S. flag -- it's 3.5 m away!", ["i", "can", "not", "see", "the", "u.s.", "flag", "it", "'s", "3.5",
                                                       "m", "away"]),
    ("A one-way sign at 10:30; the dogs' bowls...", ["a", "one-way", "sign", "at", "10:30", "the", "dogs", "bowls"]),
    ("", []),
])
def test_ptb_tokenize_matches_the_java_tokenizer_on_known_cases(text, tokens):
    assert ptb_tokenize(text) == tokens


def test_bleu_uses_the_closest_reference_length_and_brevity_penalty():
    bleu = coco_bleu([["a", "cat", "sat"]], [[["a", "cat", "sat", "on", "mats"], ["the", "dog"]]])
    assert bleu[0] == pytest.approx(1.0, abs=1e-6)  # the closest reference has 2 tokens: no brevity penalty
    bleu = coco_bleu([["a", "cat", "sat"]], [[["a", "cat", "sat", "on", "mats"]]])
    assert bleu[0] == pytest.approx(math.exp(1 - 5 / 3), rel=1e-6)
    # no 4-gram in a 3-token hypothesis: the reference code's smoothing gives (1e-15 / 1e-9) ** (1/4), not 0
    assert bleu[3] == pytest.approx(math.exp(1 - 5 / 3) * 1e-6 ** 0.25, rel=1e-4)


def test_rouge_l_takes_the_best_precision_and_recall_over_references():
    score = coco_rouge_l(["a", "b", "c"], [["a", "c"], ["x"]])
    precision, recall = 2 / 3, 1.0
    assert score == pytest.approx(2.44 * precision * recall / (recall + 1.44 * precision))
    assert coco_rouge_l([], [["a"]]) == 0.0


def test_cider_d_is_ten_for_a_caption_equal_to_its_unique_references():
    scores = coco_cider_d([["a", "b", "c", "d"], ["e", "f", "g", "h"]], [[["a", "b", "c", "d"]], [["e", "f", "g", "h"]]])
    assert scores == pytest.approx([10.0, 10.0])
    # n-grams every image's references share carry no weight (idf = 0)
    assert coco_cider_d([["x"], ["x"]], [[["x"]], [["x"]]]) == [0.0, 0.0]


def test_caption_scores_check_their_inputs():
    with pytest.raises(ValueError, match="2 captions for 1"):
        caption_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        caption_scores(["a"], [[]])
    assert caption_scores([], [])["cider"] == 0.0


@pytest.mark.skipif(not MAGIC.is_file(), reason="../shared/data/coco_captions is absent")
def test_magic_outputs_score_as_published():
    rows = json.loads(MAGIC.read_text())
    scores = caption_scores([r["prediction"] for r in rows], [r["captions"] for r in rows])
    # MAGIC (Su et al. 2022), MS-COCO zero-shot: BLEU-4 12.9, ROUGE-L 39.9, CIDEr 49.3
    assert scores["bleu_4"] == pytest.approx(12.9, abs=0.05)
    assert scores["rouge_l"] == pytest.approx(39.9, abs=0.05)
    assert scores["cider"] == pytest.approx(49.3, abs=0.05)
