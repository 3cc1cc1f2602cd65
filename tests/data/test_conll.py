"""CoNLL reading and tagging-scheme conversion."""

from __future__ import annotations

import pytest

from lmforge.data.conll import from_bio, read_conll, split_words, to_bio
from lmforge.data.errors_policy import RowErrors
from lmforge.errors import DataError


def test_reads_columns_docstart_and_sentence_breaks(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert sentences[1].where == f"{path}, line 6"
    assert sentences[1].text == "Peter Blackburn" and sentences[1].offsets == [(0, 5), (6, 15)]


def test_wrong_column_count_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP B-ORG\nrejects O\n")
    with pytest.raises(DataError, match=rf"{path}, line 2: expected 3 columns like the first line, found 2"):
        read_conll(path)
    errors = RowErrors("skip")
    assert read_conll(path, errors) == [] and len(errors.skipped) == 1


def test_bad_tag_is_reported(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU X-ORG\n")
    with pytest.raises(DataError, match="tag 'X-ORG' is not O or B-/I-/E-/S-<type>"):
        read_conll(path)


@pytest.mark.parametrize(("scheme", "tags"), [
    ("bio", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
    ("iob1", ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]),
    ("iobes", ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC"]),
])
def test_schemes_convert_consistently(scheme, tags):
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert to_bio(tags, scheme) == bio
    assert from_bio(bio, scheme) == tags


def test_iobes_tag_in_bio_file_is_rejected():
    with pytest.raises(ValueError, match="belongs to IOBES"):
        to_bio(["S-PER"], "bio")


def test_split_words_keeps_unicode_offsets():
    sentence = split_words("Zoë visited São Paulo.", "")
    assert sentence.tokens == ["Zoë", "visited", "São", "Paulo", "."]
    assert [sentence.text[a:b] for a, b in sentence.offsets] == sentence.tokens
