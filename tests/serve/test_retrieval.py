"""Retrieval-augmented chat: FAQ files, nearest entries, grounded prompts, and the served answer naming them."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from lmforge.data.faq import read_faq
from lmforge.data.grounding import FaqEntry
from lmforge.errors import DataError
from lmforge.models.sentence import SentenceEncoder
from lmforge.serve.app import create_app
from lmforge.serve.retrieval import FaqRetriever
from tests.serve.conftest import NAME, served

ENTRIES = [FaqEntry("what a great film", "a very good answer"), FaqEntry("an awful boring film", "a bad answer"),
           FaqEntry("the plot was fine", "a plain answer")]


@pytest.fixture(scope="module")
def retriever(tiny_bert):
    return FaqRetriever(ENTRIES, SentenceEncoder(str(tiny_bert)), top_k=2, min_score=-1.0)


def test_faq_files_are_read_and_bad_rows_named(tmp_path):
    good = tmp_path / "faq.jsonl"
    good.write_text("".join(json.dumps({"question": e.question, "answer": e.answer}) + "\n" for e in ENTRIES))
    assert read_faq(good) == ENTRIES
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: an FAQ row needs non-empty 'question' and 'answer'"):
        read_faq(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("question,answer\n")
    with pytest.raises(DataError, match="no FAQ entries"):
        read_faq(empty)


def test_the_entry_asked_about_comes_first(retriever):
    for entry in ENTRIES:
        hits = retriever.search(f"{entry.question} {entry.answer}")
        assert hits[0][1] == entry and len(hits) == 2 and hits[0][0] >= hits[1][0]
    strict = FaqRetriever(ENTRIES, retriever.encoder, top_k=3, min_score=1.01)
    assert strict.search("what a great film") == []  # nothing is that similar


def test_ground_puts_the_entries_in_the_system_message(retriever):
    asked = "what a great film a very good answer"  # an entry's own text: nearest to it whatever the weights
    messages, retrieved = retriever.ground([{"role": "user", "content": asked}])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Q: what a great film\nA: a very good answer" in messages[0]["content"]
    assert retrieved[0]["question"] == "what a great film" and len(retrieved) == 2
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the plot was fine a plain answer"}]
    merged, _ = retriever.ground(own)
    assert len(merged) == 2 and merged[0]["content"].startswith("Be brief.\n\n") and "Q: the plot was fine" in merged[0]["content"]


def test_a_served_chat_answer_names_what_it_was_grounded_in(tiny_chat_llama, retriever):
    grounded = served(tiny_chat_llama)
    grounded.retriever = retriever
    body = {"model": NAME, "messages": [{"role": "user", "content": "what a great film a very good answer"}],
            "max_tokens": 3}
    with TestClient(create_app(grounded)) as client:
        answer = client.post("/v1/chat/completions", json=body).json()
    with TestClient(create_app(served(tiny_chat_llama))) as client:
        plain = client.post("/v1/chat/completions", json=body).json()
    assert answer["lmforge"]["retrieved"][0]["question"] == "what a great film"
    assert "lmforge" not in plain
    assert answer["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 20  # the FAQ was read


def test_serve_refuses_an_faq_for_a_classification_run(tiny_config, tmp_path, capsys):
    from lmforge.cli import main

    assert main(["train", str(tiny_config)]) == 0
    faq = tmp_path / "faq.jsonl"
    faq.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    capsys.readouterr()
    assert main(["serve", str(tmp_path / "run"), "--faq", str(faq)]) != 0
    assert "--faq grounds chat answers" in capsys.readouterr().err
