"""llama.cpp holding a GGUF model (llama-cpp-python's low-level API), torch-free: one context shared by every
engine on it, whose sequences hold the rows being decoded; logits come back as numpy views of llama.cpp's buffer.

`decode/llama_cpp_engine.py` runs the decoding engine's strategies on it (torch tensors over those views);
`decode/light_batch.py` serves plain requests on it without importing torch at all.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

from lmforge.errors import ConfigError, ModelError
from lmforge.packages import require


def default_threads() -> int:
    """torch's thread count where torch is loaded (what the rest of the process computes with), else the CPUs this
    process may run on."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else len(os.sched_getaffinity(0))


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _QUIET(level: int, text: bytes, data: object) -> None:  # noqa: N802 - a C callback kept alive at module level
    """llama.cpp's log callback: its messages are dropped (its errors reach lmforge as return codes)."""


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
        self.threads = threads or default_threads()
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
        _check_sequences(sequences)
        sequence_ids = max(sequences, self.sequence_ids if same_kind else 0, 4)
        if separate:
            self._make(sequence_ids, 0, max(row_cells, self.row_cells if same_kind else 0, 256))
        else:
            self._make(sequence_ids, max(cells, self.cells if same_kind else 0, 512), None)

    def layout(self, sequences: int, row_cells: int) -> None:
        """Exactly `sequences` sequences besides the prefix cache's, each in its own KV stream of `row_cells` cells
        (a server's batch sets the layout its requests need while it is idle; the prefix cache is lost then)."""
        if self.context is not None and (self.sequence_ids, self.row_cells) == (sequences + 1, row_cells):
            return
        _check_sequences(sequences + 1)
        self._make(sequences + 1, 0, row_cells)

    def _make(self, sequence_ids: int, cells: int, row_cells: int | None) -> None:
        """A new context of `sequence_ids` sequences: one KV cache of `cells` cells shared by all, or with
        `row_cells` a stream of that many cells each."""
        if self.busy:
            raise ModelError(f"the llama.cpp context is in use and too small ({self.cells} KV cells, "
                             f"{self.sequence_ids - 1} sequences); decode fewer or shorter requests at once, or start "
                             "the server with a larger --max-batch or --max-tokens (its room is reserved from them)")
        if self.context is not None:
            self.llama.llama_free(self.context)
        self.sequence_ids, self.row_cells = sequence_ids, row_cells
        self.cells = row_cells * sequence_ids if row_cells is not None else cells
        params = self.llama.llama_context_default_params()
        params.n_ctx, params.n_seq_max = self.cells, self.sequence_ids
        params.n_batch = params.n_ubatch = DECODE_TOKENS
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified, params.no_perf = row_cells is None, True  # unified: a copied sequence shares its cells
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
        self.free.sort()  # the lowest ids: a batch's rows on consecutive ids are read in one pass (`LightBatch`)
        taken, self.free = self.free[:count], self.free[count:]
        return taken

    def move(self, source: int, target: int) -> None:
        """The free sequence `target` takes `source`'s cells; `source` is emptied and freed."""
        self.free.remove(target)
        self.copy(source, target)
        self.release([source])

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

    def decode(self, entries: list[tuple[int, int, int, bool]], shape: tuple[int, ...] = (-1,)) -> np.ndarray:
        """Run (token, position, sequence, wants logits) entries through llama.cpp; the logits of the entries
        that want them, in order, float32 of `shape` + (vocab,). From one call (at most DECODE_TOKENS entries),
        a view of llama.cpp's own buffer, valid until the next decode (clone what must outlive it): after
        llama.cpp has streamed the weights, every buffer and op touched costs tens of µs, which counts at its
        9 ms a token."""
        if len(entries) <= DECODE_TOKENS:
            return self._decode(entries, shape)
        parts = [self._decode(entries[i:i + DECODE_TOKENS], (-1,)).copy()
                 for i in range(0, len(entries), DECODE_TOKENS)]
        return np.concatenate(parts).reshape(*shape, self.vocab_size)

    def _decode(self, entries: list[tuple[int, int, int, bool]], shape: tuple[int, ...]) -> np.ndarray:
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

    def _logits(self, rows: int, shape: tuple[int, ...]) -> np.ndarray:
        """llama.cpp's logits buffer as an array of `shape` + (vocab,), its view kept while the buffer stays put."""
        address = self._logits_address(self.context)
        key = (address, rows, shape)
        if self._view_key != key:
            floats = (ctypes.c_float * (rows * self.vocab_size)).from_address(address)
            self._view = np.frombuffer(floats, dtype=np.float32).reshape(*shape, self.vocab_size)
            self._view_key = key
        return self._view

    def memory(self):
        return self.llama.llama_get_memory(self.context)


def _check_sequences(sequences: int) -> None:
    if sequences > MAX_SEQUENCES:
        raise ConfigError(f"llama.cpp holds at most {MAX_SEQUENCES - 1} rows at once ({sequences - 1} asked: "
                          "prompts × beams × 2); decode fewer prompts or beams at a time")


_RUNTIMES: dict[Path, LlamaCppModel] = {}


def runtime_for_gguf(gguf: Path) -> LlamaCppModel:
    """llama.cpp holding `gguf`, loaded once per process (every engine and server batch on it shares it)."""
    if gguf not in _RUNTIMES:
        _RUNTIMES[gguf] = LlamaCppModel(gguf)
    return _RUNTIMES[gguf]
