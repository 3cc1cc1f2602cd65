"""What each decoded row has produced so far, and recording a step of it: shared by the torch loop
(`strategies/sampling.py`) and the torch-free server batch on llama.cpp (`light_batch.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lmforge.decode.candidate import Candidate
from lmforge.decode.text import StopCheck

OnTokens = Callable[[list[int], list[int]], None]  # (original rows, their new tokens) after each step: streaming


@dataclass
class RowOutputs:
    """What each row has generated so far: its tokens, their summed log-probs and (with explain) the steps."""

    generated: list[list[int]]
    logprob_sums: list[float]
    steps: list[list[dict]]

    @classmethod
    def empty(cls, rows: int) -> RowOutputs:
        return cls([[] for _ in range(rows)], [0.0] * rows, [[] for _ in range(rows)])

    def candidates(self) -> list[Candidate]:
        """One candidate per row, scored by its mean log-prob."""
        return [Candidate(tokens, total / max(len(tokens), 1), steps)
                for tokens, total, steps in zip(self.generated, self.logprob_sums, self.steps, strict=True)]


def record_step(alive: list[int], tokens: list[int], stop_ids: list[int], logprobs: list[float],
                generated: list[list[int]], logprob_sums: list[float], stop_check: StopCheck | None,
                on_tokens: OnTokens | None) -> list[bool]:
    """Append each row's new token (unless it is a stop token) and tell `on_tokens`; whether each row is done."""
    done = [token in stop_ids for token in tokens]
    kept_rows, kept_tokens = [], []
    for row, (index, token) in enumerate(zip(alive, tokens, strict=True)):
        if done[row]:
            continue
        generated[index].append(token)
        logprob_sums[index] += logprobs[row]
        kept_rows.append(index)
        kept_tokens.append(token)
        if stop_check is not None and stop_check(generated[index]):
            done[row] = True
    if on_tokens is not None and kept_rows:
        on_tokens(kept_rows, kept_tokens)
    return done


def prompt_listener(on_tokens: OnTokens | None, copies: int) -> OnTokens | None:
    """A request's token listener told its prompt rows, for a batch holding `copies` rows of each prompt."""
    if on_tokens is None:
        return None
    return lambda rows, tokens: on_tokens([r // copies for r in rows], tokens)


def copies_of(params) -> int:
    """Rows per prompt in a continuous batch: sampling's num_return_sequences, else one."""
    return params.num_return_sequences if params.strategy == "sample" else 1


def widest_of(params) -> int:
    """Rows a prompt may come to hold: its beams or its sampled copies."""
    return max(params.num_beams if params.strategy == "beam" else 1, params.num_return_sequences)


def cells_of(prompts: list[list[int]], params, max_new_tokens: int) -> int:
    """KV cells a request may come to hold on llama.cpp: each row's prompt and every token it may add."""
    return copies_of(params) * sum(len(p) + max_new_tokens for p in prompts)


def grouped_candidates(outputs: RowOutputs, copies: int) -> list[list[Candidate]]:
    """One list per prompt of its rows' candidates (`copies` rows each), best first."""
    flat = outputs.candidates()
    return [sorted(flat[i:i + copies], key=lambda c: -c.score) for i in range(0, len(flat), copies)]
