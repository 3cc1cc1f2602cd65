"""The decoding engine's steps run by llama.cpp (llama-cpp-python's low-level API) on a GGUF file.

`LlamaCppEngine` keeps `Engine`'s interface — prefill, step, select, crop — so the strategies, rules and
constraints run unchanged and only the forward passes move: each row is one sequence of a llama.cpp context,
a step is one `llama_decode` over every row's new tokens, and `select` (beams, finished rows) copies
sequences in llama.cpp's KV cache, whose cells are shared between sequences rather than copied.

The context keeps one more sequence, the prefix cache: the first prompt of the last batch. A prompt that starts
with the same tokens (a system prompt, a chat's earlier turns) copies their KV from it and reads only the rest, as
llama.cpp's server and llama-cpp-python do.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path

import torch

from lmforge.decode.engine import pad_prompts
from lmforge.decode.llama_cpp_runtime import LlamaCppModel, runtime_for_gguf
from lmforge.errors import ConfigError


@contextlib.contextmanager
def torch_alone_on_one_thread() -> Iterator[None]:
    """torch on one thread while llama.cpp decodes: the rules' small tensor ops gain nothing from a second
    thread, and torch's OpenMP workers, spinning after each op, would take a core from llama.cpp's own threads
    (measured: greedy b1 on f32 went from 0.95× to 1.04× llama-cpp-python's own loop)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LlamaCppEngine:
    """A batch of rows decoded by llama.cpp, with `Engine`'s interface (decoder-only models; no soft prompts,
    hidden states or forks: strategies that need those stay on the torch engine). Each row is a sequence of
    the runtime's context, handed back when the row is dropped or the engine closed."""

    encoder_decoder = False
    keep_hidden = False
    last_hidden = None
    model = None
    device = torch.device("cpu")

    def __init__(self, runtime: LlamaCppModel, prompts: list[list[int]], pad_id: int, max_new_tokens: int,
                 rows_at_most: int | None = None, prefix_cache: bool = False, separate: bool = False):
        """`rows_at_most`: the most rows `select` may make (beams × prompts), default the prompts; `prefix_cache`:
        prompts reuse the KV of the tokens they share with the runtime's cached prompt, and the first becomes it;
        `separate`: each row in its own KV stream (faster at batch > 1 when rows are rarely copied: not beams)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.runtime, self.pad_id = runtime, pad_id
        self.prompt_ids, self.prompt_mask = pad_prompts(prompts, pad_id, left=True)
        self._prompts = [list(p) for p in prompts]
        self.rows = len(prompts)
        if not runtime.busy:  # else the context was sized for what shares it (a server reserves its room)
            slots, row_cells = max(rows_at_most or self.rows, self.rows), self.prompt_ids.shape[1] + max_new_tokens + 64
            # a select claims its copies before it hands back the rows it drops: beams need twice their rows
            runtime.reserve(cells=slots * row_cells + 64, sequences=slots + (self.rows if separate else slots),
                            row_cells=row_cells if separate else None)
        self.sequences = runtime.claim(self.rows)
        self.owned = set(self.sequences)  # what goes back to the pool: changed in place, the finalizer holds it
        self._finalizer = weakref.finalize(self, runtime.release, self.owned)
        self.positions = [len(p) for p in prompts]  # each row's next position
        self.length, self.max_new_tokens, self.prefix_cache = 0, max_new_tokens, prefix_cache

    @property
    def prompt_length(self) -> int:
        return self.prompt_ids.shape[1]

    @property
    def prompt_lengths(self) -> list[int]:
        """Each row's prompt length unpadded (where its generated tokens start)."""
        return [len(p) for p in self._prompts]

    def prompts(self) -> list[list[int]]:
        return [list(p) for p in self._prompts]

    def first_tokens(self) -> torch.Tensor:
        return self.prompt_ids

    def prefill(self) -> torch.Tensor:
        """Every prompt through llama.cpp; each row's next-token logits, (rows, vocab) float32."""
        if self.length:
            raise RuntimeError("prefill runs once per engine")
        pairs = list(zip(self._prompts, self.sequences, strict=True))
        reused = [self.runtime.reuse_prefix(prompt, sequence) if self.prefix_cache else 0 for prompt, sequence in pairs]
        entries = [(prompt[position], position, sequence, position == len(prompt) - 1)
                   for (prompt, sequence), start in zip(pairs, reused, strict=True)
                   for position in range(start, len(prompt))]
        logits = torch.from_numpy(self.runtime.decode(entries))
        if self.prefix_cache:
            self.runtime.remember(*pairs[0])
        self.length = self.prompt_length
        return logits

    def step(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        """Append `tokens` (rows, k) to every row; the logits of the last `keep` positions, (rows, keep, vocab)."""
        k = tokens.shape[1]
        positions, sequences = self.positions, self.sequences
        entries = [(token, positions[r] + j, sequences[r], j >= k - keep)
                   for r, row in enumerate(tokens.tolist()) for j, token in enumerate(row)]
        logits = torch.from_numpy(self.runtime.decode(entries, (self.rows, keep)))
        self.positions = [position + k for position in positions]
        self.length += k
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Row i becomes old row `rows[i]`: a row taken again is a copy of its sequence (shared cells)."""
        picked = rows.tolist()
        if picked == list(range(self.rows)):
            return
        kept, sequences = set(), []
        for old in picked:
            source = self.sequences[old]
            if source not in kept:
                kept.add(source)
                sequences.append(source)
                continue
            target = self.runtime.claim(1)[0]
            self.owned.add(target)
            self.runtime.copy(source, target)
            sequences.append(target)
        dropped = set(self.sequences) - kept
        self.owned -= dropped
        self.runtime.release(dropped)
        self.sequences = sequences
        self.positions = [self.positions[r] for r in picked]
        self._prompts = [self._prompts[r] for r in picked]
        self.prompt_ids, self.prompt_mask = self.prompt_ids[rows], self.prompt_mask[rows]
        self.rows = len(picked)

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (rejected speculative tokens)."""
        removed = self.length - length
        if removed <= 0:
            return
        self.positions = [position - removed for position in self.positions]
        memory = self.runtime.memory()
        for sequence, position in zip(self.sequences, self.positions, strict=True):
            self.runtime.llama.llama_memory_seq_rm(memory, sequence, position, -1)
        self.length = length

    def merge(self, other: LlamaCppEngine) -> None:
        """Append the rows of `other`, a prefilled engine on the same llama.cpp model (continuous batching: a
        request joins a running batch); its sequences become this engine's, each row keeps its positions."""
        if not isinstance(other, LlamaCppEngine) or other.runtime is not self.runtime or not self.length or not other.length:
            raise ValueError("merge joins prefilled llama.cpp engines on one model")
        self.sequences = self.sequences + other.sequences
        self.owned |= other.owned
        other.owned.clear()
        self.positions = self.positions + other.positions
        self._prompts = self._prompts + other._prompts
        self.prompt_ids, self.prompt_mask = pad_prompts(self._prompts, self.pad_id, left=True)
        self.rows += other.rows
        self.length = max(self.length, other.length)

    def compact(self) -> None:
        """Nothing to drop: each row's cells are its own sequence's, freed with it."""

    def close(self) -> None:
        """Hand every sequence back to the pool (also done when the engine is collected)."""
        self._finalizer()

    def alone(self, prompt: list[int]) -> LlamaCppEngine:
        """A one-row engine for `prompt` on the same model."""
        return LlamaCppEngine(self.runtime, [prompt], self.pad_id, self.max_new_tokens, prefix_cache=self.prefix_cache,
                              separate=True)

    def fork(self, rows: torch.Tensor, logits: torch.Tensor) -> LlamaCppEngine:
        raise ConfigError("decode.engine llama.cpp does not fork a prefill (strategy auto); use engine torch")


def llama_cpp_runtime(model: torch.nn.Module, weights: str) -> LlamaCppModel:
    """llama.cpp holding `model` (a plain HF model loaded from a folder) at the GGUF type of `weights`; the
    GGUF is converted on first use and cached, the loaded model kept for the process."""
    from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS, cached_gguf

    folder = Path(getattr(model, "name_or_path", "") or "")
    if type(model).__name__.startswith("Peft") or not (folder / "config.json").is_file():
        raise ConfigError("decode.engine llama.cpp converts the model's own folder to GGUF; a PEFT run needs its "
                          "adapters merged first: `lmforge export RUN --output DIR`, then decode DIR")
    return runtime_for_gguf(cached_gguf(folder, OUTTYPE_OF_WEIGHTS[weights]))
