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
import ctypes
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lmforge.decode.engine import pad_prompts
from lmforge.errors import ConfigError, ModelError
from lmforge.packages import require


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _QUIET(level: int, text: bytes, data: object) -> None:  # noqa: N802 - a C callback kept alive at module level
    """llama.cpp's log callback: its messages are dropped (its errors reach lmforge as return codes)."""


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


MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ
DECODE_TOKENS = 512  # tokens one llama_decode call takes (n_batch); a longer prefill takes several calls


class LlamaCppModel:
    """A GGUF model loaded in llama.cpp and one context shared by every engine on it: each holds sequence ids
    from the pool (`claim`, `release`), so a request can join a running batch; the last id holds the prefix
    cache (`cached`: the tokens whose KV it keeps)."""

    def __init__(self, gguf: Path, threads: int | None = None):
        self.llama = require("llama_cpp", "llama-cpp", "decode.engine llama.cpp")
        self.llama.llama_log_set(_QUIET, ctypes.c_void_p(0))  # llama.cpp reports every load on stderr
        self.llama.llama_backend_init()
        params = self.llama.llama_model_default_params()
        # llama.cpp's extra weight buffers (AMX, repacked q8_0) crash llama.cpp 0.3.36's native build on AMX CPUs
        # in the first decode of a q8_0 model (llama-server too); f32 and bf16 weights never use them
        params.use_extra_bufts = False
        self.model = self.llama.llama_model_load_from_file(str(gguf).encode(), params)
        if not self.model:
            raise ModelError(f"llama.cpp cannot load {gguf}; write it again with `lmforge export --format gguf`")
        self.vocab_size = self.llama.llama_vocab_n_tokens(self.llama.llama_model_get_vocab(self.model))
        self.threads = threads or torch.get_num_threads()
        self.context, self.cells, self.sequence_ids = None, 0, 0
        self.row_cells: int | None = None  # each sequence's own KV stream of this many cells; None: one shared cache
        self.shared_only = False  # a server keeps its one shared cache (set after reserving its room)
        self.free: list[int] = []  # sequence ids no engine holds
        self.cached: list[int] = []
        self.batch = self.llama.llama_batch_init(DECODE_TOKENS, 0, 1)
        self._view, self._view_key = None, None
        self._logits_address = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(
            ("llama_get_logits", self.llama.llama_cpp._lib))  # the buffer's address as an int: one call, no pointer object

    @property
    def cache_sequence(self) -> int:
        return self.sequence_ids - 1

    @property
    def busy(self) -> bool:
        """Whether an engine holds a sequence (the context cannot be remade)."""
        return len(self.free) < self.sequence_ids - 1

    def reserve(self, cells: int, sequences: int, row_cells: int | None = None) -> None:
        """Room for `sequences` sequences at once (besides the prefix cache's) in one KV cache of at least `cells`
        cells shared by all, whose copies share cells (beams); with `row_cells` (unless `shared_only`), each
        sequence in its own stream of that many cells instead, as llama.cpp's batched example does: at batch > 1
        a row attends to its own cells, not to every row's, and copies move data. A different context is made only
        while no engine holds a sequence (the prefix cache is lost then)."""
        separate = row_cells is not None and not self.shared_only
        sequences += 1
        same_kind = self.context is not None and separate == (self.row_cells is not None)
        if same_kind and sequences <= self.sequence_ids:
            if (row_cells <= self.row_cells) if separate else (cells + len(self.cached) <= self.cells):
                return
        if sequences > MAX_SEQUENCES:
            raise ConfigError(f"llama.cpp holds at most {MAX_SEQUENCES - 1} rows at once ({sequences - 1} asked: "
                              "prompts × beams × 2); decode fewer prompts or beams at a time")
        if self.busy:
            raise ModelError(f"the llama.cpp context is in use and too small ({self.cells} KV cells, "
                             f"{self.sequence_ids - 1} sequences); decode fewer or shorter requests at once, or start "
                             "the server with a larger --max-batch or --max-tokens (its room is reserved from them)")
        if self.context is not None:
            self.llama.llama_free(self.context)
        self.sequence_ids = max(sequences, self.sequence_ids if same_kind else 0, 4)
        if separate:
            self.row_cells = max(row_cells, self.row_cells if same_kind else 0, 256)
            self.cells = self.row_cells * self.sequence_ids
        else:
            self.row_cells, self.cells = None, max(cells, self.cells if same_kind else 0, 512)
        params = self.llama.llama_context_default_params()
        params.n_ctx, params.n_seq_max = self.cells, self.sequence_ids
        params.n_batch = params.n_ubatch = DECODE_TOKENS
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified, params.no_perf = not separate, True  # unified: a copied sequence shares its cells
        self.context = self.llama.llama_init_from_model(self.model, params)
        if not self.context:
            raise ModelError(f"llama.cpp could not make a context of {self.cells} cells")
        self.free, self.cached = list(range(self.sequence_ids - 1)), []

    def copy(self, source: int, target: int, end: int = -1) -> None:
        """`target` gets `source`'s cells up to position `end` (all: -1). In one shared cache the cells are shared;
        between separate streams llama.cpp copies whole streams only, so the tail is cut after."""
        memory = self.memory()
        if self.row_cells is None:
            self.llama.llama_memory_seq_cp(memory, source, target, 0 if end >= 0 else -1, end)
            return
        self.llama.llama_memory_seq_cp(memory, source, target, -1, -1)
        if end >= 0:
            self.llama.llama_memory_seq_rm(memory, target, end, -1)

    def claim(self, count: int) -> list[int]:
        """`count` free sequence ids, empty."""
        if count > len(self.free):
            raise ModelError(f"the llama.cpp context has {len(self.free)} free sequences, {count} needed; "
                             "decode fewer rows at once")
        taken, self.free = self.free[:count], self.free[count:]
        return taken

    def release(self, sequences: set[int] | list[int]) -> None:
        """Empty `sequences` and give them back to the pool."""
        memory = self.memory()
        for sequence in sequences:
            self.llama.llama_memory_seq_rm(memory, sequence, -1, -1)
            self.free.append(sequence)

    def reuse_prefix(self, prompt: list[int], sequence: int) -> int:
        """Give `sequence` the cached KV of the tokens `prompt` starts with (all but its last, read again for its
        logits); how many tokens it needs no more."""
        shared = 0
        for cached, token in zip(self.cached, prompt[:-1], strict=False):
            if cached != token:
                break
            shared += 1
        if shared:
            self.copy(self.cache_sequence, sequence, shared)
        return shared

    def remember(self, prompt: list[int], sequence: int) -> None:
        """The prefix cache becomes `prompt`, whose KV `sequence` holds (cells shared, not copied)."""
        self.llama.llama_memory_seq_rm(self.memory(), self.cache_sequence, -1, -1)
        self.copy(sequence, self.cache_sequence, len(prompt))
        self.cached = list(prompt)

    def decode(self, entries: list[tuple[int, int, int, bool]], shape: tuple[int, ...] = (-1,)) -> torch.Tensor:
        """Run (token, position, sequence, wants logits) entries through llama.cpp; the logits of the entries
        that want them, in order, float32 of `shape` + (vocab,). From one call (at most DECODE_TOKENS entries),
        a view of llama.cpp's own buffer, valid until the next decode (clone what must outlive it): after
        llama.cpp has streamed the weights, every buffer and op touched costs tens of µs, which counts at its
        9 ms a token."""
        if len(entries) <= DECODE_TOKENS:
            return self._decode(entries, shape)
        parts = [self._decode(entries[i:i + DECODE_TOKENS], (-1,)).clone()
                 for i in range(0, len(entries), DECODE_TOKENS)]
        return torch.cat(parts).view(*shape, self.vocab_size)

    def _decode(self, entries: list[tuple[int, int, int, bool]], shape: tuple[int, ...]) -> torch.Tensor:
        batch = self.batch
        token, pos, n_seq_id, seq_id, wants = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        for i, (t, position, sequence, logits) in enumerate(entries):
            token[i], pos[i], n_seq_id[i], wants[i] = t, position, 1, logits
            seq_id[i][0] = sequence
        batch.n_tokens = len(entries)
        status = self.llama.llama_decode(self.context, batch)
        if status != 0:
            raise ModelError(f"llama.cpp's decode failed (status {status}): its KV cache is full; decode fewer or "
                             "shorter requests at once (or start the server with a larger --max-batch or --max-tokens)")
        return self._logits(sum(entry[3] for entry in entries), shape)

    def _logits(self, rows: int, shape: tuple[int, ...]) -> torch.Tensor:
        """llama.cpp's logits buffer as a tensor of `shape` + (vocab,), its view kept while the buffer stays put."""
        address = self._logits_address(self.context)
        key = (address, rows, shape)
        if self._view_key != key:
            floats = (ctypes.c_float * (rows * self.vocab_size)).from_address(address)
            array = np.frombuffer(floats, dtype=np.float32).reshape(*shape, self.vocab_size)
            self._view, self._view_key = torch.from_numpy(array), key
        return self._view

    def memory(self):
        return self.llama.llama_get_memory(self.context)


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
        logits = self.runtime.decode(entries)
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
        logits = self.runtime.decode(entries, (self.rows, keep))
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


_RUNTIMES: dict[Path, LlamaCppModel] = {}


def llama_cpp_runtime(model: torch.nn.Module, weights: str) -> LlamaCppModel:
    """llama.cpp holding `model` (a plain HF model loaded from a folder) at the GGUF type of `weights`; the
    GGUF is converted on first use and cached, the loaded model kept for the process."""
    from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS, cached_gguf

    folder = Path(getattr(model, "name_or_path", "") or "")
    if type(model).__name__.startswith("Peft") or not (folder / "config.json").is_file():
        raise ConfigError("decode.engine llama.cpp converts the model's own folder to GGUF; a PEFT run needs its "
                          "adapters merged first: `lmforge export RUN --output DIR`, then decode DIR")
    gguf = cached_gguf(folder, OUTTYPE_OF_WEIGHTS[weights])
    if gguf not in _RUNTIMES:
        _RUNTIMES[gguf] = LlamaCppModel(gguf)
    return _RUNTIMES[gguf]
