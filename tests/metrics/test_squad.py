"""SQuAD normalisation and scores, as the official evaluation script computes them."""

from __future__ import annotations

import pytest

from lmforge.metrics.squad import exact_match, normalize_answer, squad_scores, token_f1


@pytest.mark.parametrize(("raw", "normal"), [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple, a pear; the end.", "apple pear end"),
    ("Theatre", "theatre"),  # 'the' only as a whole word
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_normalisation(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_f1():
    assert exact_match("the Denver Broncos", "Denver Broncos!") == 1.0
    assert token_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_scores_take_the_best_gold_answer_and_handle_unanswerable():
    scores = squad_scores(["Broncos", "", "Paris"], [["Denver Broncos", "Broncos"], [], ["London"]])
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["no_answer_exact_match"] == 100.0 and scores["has_answer_exact_match"] == 50.0
