"""Datasets built from the installed chatterbot-corpus: grounded (retrieval-augmented) dialogues."""

from __future__ import annotations

import pytest

from lmforge.data.grounding import INSTRUCTIONS, NOT_COVERED
from lmforge.data.packaged import chatterbot_grounded_dialogues

pytest.importorskip("chatterbot_corpus", reason="chatterbot-corpus is not installed")


def test_grounded_dialogues_read_the_reply_off_the_faq_or_pass_it_on():
    rows = chatterbot_grounded_dialogues()
    assert len(rows) > 2000
    covered = [r for r in rows if r["covered"]]
    assert 0.75 < len(covered) / len(rows) < 0.85
    for row in rows[:200]:
        system, user, reply = row["messages"]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert system["content"].startswith(INSTRUCTIONS)
        entries = system["content"].split("\n\nFAQ:\n", 1)[1]
        if row["covered"]:
            lines = entries.split("\n")
            pairs = {lines[i + 1][3:]: lines[i][3:] for i in range(0, len(lines), 2)}  # answer -> question
            assert len(pairs) == 2 and reply["content"] in pairs
            # the entry words the question loosely: some of the customer's words, lower-cased
            assert set(pairs[reply["content"]].split()) <= set(user["content"].lower().rstrip("?!.").split())
        else:
            assert reply["content"] == NOT_COVERED and f"Q: {user['content']}\n" not in entries
