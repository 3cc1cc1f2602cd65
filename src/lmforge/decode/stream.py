"""Streaming: the text of one prompt's output as an iterator of deltas, while decoding runs.

Decoding runs in a worker thread and hands tokens over a queue; each delta is the newly complete
text (a token that ends inside a multi-byte character waits for the next one), and text after a
stop string is never yielded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.decode.text import TextDeltas  # noqa: F401 - streaming's other half
from lmforge.errors import ConfigError
from lmforge.models.openmp import release_openmp_threads

_DONE = object()


def stream_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: list[int], params: DecodeParams,
                max_new_tokens: int, stop_strings: list[str] | None = None, precision: str = "fp32") -> Iterator[str]:
    """Yield the output text of `prompt` piece by piece (greedy or sampling, one sequence)."""
    if params.strategy == "beam" or params.num_return_sequences != 1:
        raise ConfigError("streaming follows one sequence: use greedy, sample or prompt_lookup, "
                          "with num_return_sequences 1")
    handoff: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            generate(model, tokenizer, DecodeRequest([prompt], params, max_new_tokens, stop_strings, batch_size=1,
                                                     precision=precision,
                                                     on_tokens=lambda rows, tokens: [handoff.put(t) for t in tokens]))
        except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
            failure.append(exc)
        finally:
            handoff.put(_DONE)

    release_openmp_threads()  # this thread only waits now: its OpenMP team would slow the decoding one's
    threading.Thread(target=work, daemon=True).start()
    deltas = TextDeltas(tokenizer, stop_strings)
    while (token := handoff.get()) is not _DONE:
        if delta := deltas.push(token):
            yield delta
    if failure:
        raise failure[0]

