"""What a server decodes with (`ServedModel`) and how it was started (`ServeOptions`): the names the app and its
routes share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmforge.serve.limits import RequestLimits
from lmforge.serve.scheduler import Experts

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmforge.serve.retrieval import FaqRetriever


@dataclass
class ServedModel:
    """What the server decodes with: the model, its tokenizer and its limits."""

    name: str
    model: PreTrainedModel | None  # None on llama.cpp alone: `load_torch` loads it for what torch decodes
    tokenizer: PreTrainedTokenizerBase
    default_max_tokens: int = 256
    context_length: int = 2048
    precision: str = "fp32"
    retriever: FaqRetriever | None = None  # chat answers grounded in the nearest FAQ entries
    experts: Experts | None = None  # a strategy network: each prompt decoded by the expert its router picks
    runtime: Any = None  # llama.cpp holding the model (`lmforge serve --engine llama.cpp`): it runs the forward passes
    decoding: dict = field(default_factory=dict)  # decode fields every request gets (engine, weights)
    adapters: tuple[str, ...] = ()  # LoRA adapters served beside the base (`model` is then a peft model holding them)
    default_adapter: str | None = None  # a run served with its side adapters: its own one, for requests naming it
    stop_ids: list[int] = field(default_factory=list)  # the model's stop tokens (else read from `model`)
    load_torch: Callable[[], PreTrainedModel] | None = None  # llama.cpp alone: the torch model, loaded on first need

    @property
    def engine(self) -> str:
        """What decodes: torch, llama.cpp, or auto (llama.cpp, torch for what it cannot run)."""
        return self.decoding.get("engine", "torch")


@dataclass
class ServeOptions:
    api_key: str | None = None
    max_queue: int = 64
    max_batch: int = 8
    request_timeout_s: float = 300.0
    max_body_bytes: int = 1_000_000
    public_metrics: bool = False  # /metrics without the API key (when one is set)
    wave_wait_s: float = 2.0  # longest a beam/speculative/… request waits for the continuous batch to drain
    stall_after_s: float = 300.0  # /health answers 503 "stalled" when work has waited this long with no step done
    limits: RequestLimits = field(default_factory=RequestLimits)
