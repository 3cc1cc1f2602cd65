"""Render a conversation into text segments, each marked as a reply to learn or not.

With a chat template, the conversation is rendered one turn at a time and each render must extend the
previous one; the text an assistant turn adds is its segment (the template's own end-of-turn marker
included, so the model learns to stop). Without a template, turns are plain `Role: text` lines, and a
single source → target pair is `prompt`, a newline, then the target and EOS.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from lmforge.errors import DataError

Segment = tuple[str, bool]  # (text, is a reply to learn)


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def template_segments(tokenizer: PreTrainedTokenizerBase, messages: list[dict], reply: str | None,
                      where: str, learn_all_replies: bool = True) -> list[Segment]:
    """Segments of `messages` (+ the `reply`, when given) through the tokenizer's chat template.

    Earlier assistant turns are learned too when `learn_all_replies`; the open generation prompt ends
    the last segment when there is no reply."""
    turns = list(messages) + ([{"role": "assistant", "content": reply}] if reply is not None else [])
    segments: list[Segment] = []
    rendered = ""
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = _render(tokenizer, turns[:i], generation_prompt=True)
        after = _render(tokenizer, turns[: i + 1], generation_prompt=False)
        if not before.startswith(rendered) or not after.startswith(before):
            raise DataError(f"{where}: the chat template does not render turns as a growing prefix; "
                            f"set task.chat_template=false to use plain 'Role: text' lines")
        learn = learn_all_replies or i == len(turns) - 1
        segments += [(before[len(rendered):], False), (after[len(before):], learn)]
        rendered = after
    if reply is None:
        segments.append((_render(tokenizer, turns, generation_prompt=True)[len(rendered):], False))
    return [s for s in segments if s[0]]


def plain_segments(messages: list[dict], reply: str | None, eos: str, learn_all_replies: bool = True) -> list[Segment]:
    """`Role: text` lines without a template; each assistant line ends with EOS."""
    turns = list(messages) + ([{"role": "assistant", "content": reply}] if reply is not None else [])
    segments: list[Segment] = []
    for i, turn in enumerate(turns):
        if turn["role"] == "assistant":
            learn = learn_all_replies or i == len(turns) - 1
            segments += [("Assistant: ", False), (turn["content"] + eos, learn)]
        else:
            segments.append((f"{turn['role'].capitalize()}: {turn['content']}\n", False))
    if reply is None:
        segments.append(("Assistant: ", False))
    return segments
