"""`lmforge serve MODEL` on llama.cpp alone: a decoder-only model served without importing torch.

torch's libraries and operator registry hold ~200 MB of RSS before any weight, more than llama.cpp's whole q8_0
SmolLM2. Where the server decodes on llama.cpp (engine auto on the CPU, or llama.cpp) and nothing asked at start
needs torch (no run directory, adapters, FAQ, draft model or policy: `recipes/serve.py` decides), the model is
served from what its folder holds: the GGUF (converted once, in the converter's own process, and cached), the
tokenizer from tokenizer.json, the stop tokens from generation_config.json. Requests the numpy batch runs
(`decode/light_batch.py`: greedy and sampling with the common rules) never touch torch; the first other one
(beam, contrastive, penalties, …) loads the torch model (`load_torch`, from `recipes/serve.py`) and decodes in a
wave.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

from lmforge.decode.engine_choice import llama_cpp_installed, say_engine
from lmforge.decode.llama_cpp_runtime import runtime_for_gguf
from lmforge.decode.params import DEFAULT_MAX_NEW_TOKENS
from lmforge.decode.text import stop_ids_of
from lmforge.errors import ConfigError, ModelError
from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS, cached_gguf
from lmforge.models.resolve import resolve_model
from lmforge.serve.served import ServedModel

#: tokenizer classes that are tokenizer.json read as it is (what AutoTokenizer would give, with no model code)
PLAIN_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present where torch would decode on a GPU


def needs_torch(folder: Path, device: str | None, engine: str) -> str | None:
    """Why the model in `folder` is served through torch (None: llama.cpp alone serves it)."""
    if engine == "torch":
        return "--engine torch"
    if device not in (None, "cpu") or (device is None and NVIDIA_DRIVER.exists()):
        return "it decodes on a GPU"
    if not llama_cpp_installed():
        return "llama-cpp-python is not installed"
    config = _json(folder / "config.json")
    if config.get("is_encoder_decoder") or not any(a.endswith("ForCausalLM") for a in config.get("architectures") or []):
        return "llama.cpp serves decoder-only language models"
    if "quantization_config" in config:
        return "its weights are quantized"
    if not (folder / "tokenizer.json").is_file() or \
            _json(folder / "tokenizer_config.json").get("tokenizer_class") not in PLAIN_TOKENIZERS:
        return "its tokenizer needs transformers' model code"
    return None


def light_served_model(target: str, name: str | None, weights: str, device: str | None, allow_network: bool,
                       engine: str) -> ServedModel | None:
    """`target` served by llama.cpp alone at `weights`, or None where it needs torch (said then by the full path);
    the caller sets `load_torch` (recipes/serve.py)."""
    folder = Path(resolve_model(target, allow_network))
    if not folder.is_dir() or needs_torch(folder, device, engine) is not None:
        return None
    try:
        gguf = cached_gguf(folder, OUTTYPE_OF_WEIGHTS[weights])
    except (ConfigError, ModelError):
        return None  # the full path says why (or decodes on torch under auto)
    tokenizer = plain_tokenizer(folder)
    config = _json(folder / "config.json")
    generation = _json(folder / "generation_config.json") or config
    served = ServedModel(name or Path(target.rstrip("/")).name, None, tokenizer, DEFAULT_MAX_NEW_TOKENS,
                         int(config.get("max_position_embeddings") or 2048), runtime=runtime_for_gguf(gguf),
                         decoding={"engine": engine, "weights": weights},
                         stop_ids=stop_ids_of(generation.get("eos_token_id"), tokenizer))
    say_engine(str(folder), "llama.cpp", "torch not loaded; the first request llama.cpp's batch cannot decode loads "
                                         "it")
    return served


def plain_tokenizer(folder: Path):
    """The tokenizer of tokenizer.json (decoder-only models without a pad token pad with EOS, as `load_tokenizer`)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def trim_heap() -> None:
    """Hand the heap memory that loading freed (the tokenizer's JSON, the model's load) back to the system:
    glibc keeps it otherwise (12 MB of RSS on SmolLM2); nothing where the C library is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: not readable JSON ({error}); save the model again with save_pretrained") from None
