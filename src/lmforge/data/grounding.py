"""FAQ entries and the system message that grounds a chat in some of them (packaged FAQ datasets and the
server's retrieval share it; reading FAQ files is faq.py)."""

from __future__ import annotations

from dataclasses import dataclass

INSTRUCTIONS = ("You are a customer-service assistant. Answer the customer's question using the FAQ entries "
                "below; if they do not cover it, say you will pass the question on to a colleague.")
NOT_COVERED = "I'm sorry, I don't have that information. I will pass your question on to a colleague."


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str


def grounding_message(entries: list[FaqEntry], instructions: str = INSTRUCTIONS) -> str:
    """The system message that puts `entries` in front of a conversation."""
    faq = "\n".join(f"Q: {entry.question}\nA: {entry.answer}" for entry in entries) or "(no entry matches)"
    return f"{instructions}\n\nFAQ:\n{faq}"
