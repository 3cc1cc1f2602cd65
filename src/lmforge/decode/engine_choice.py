"""`decode.engine: auto` (the default): llama.cpp runs the forward passes where it can, torch elsewhere.

llama.cpp decodes a model from a GGUF converted from its folder, so it is chosen only for a decoder-only model on
the CPU whose weights are its folder's (`mark_as_saved`: loaded for decoding, not being trained), with
llama-cpp-python installed and the model convertible — and only for the strategies and rules llama.cpp runs
(`runs_on_llama_cpp`); everything else (GPU, encoder-decoders, PEFT models, contrastive, image guidance, a
static cache, compile, soft prompts) decodes on torch. The choice is said once per model and engine.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from lmforge.errors import ConfigError, ModelError

AS_SAVED = "_lmforge_as_saved"  # set on a model whose weights are its folder's, unchanged
_FAILED: dict[tuple[str, str], str] = {}  # (folder, weights) → why the GGUF could not be made (tried once)
_SAID: set[tuple[str, str]] = set()


def mark_as_saved(model: Any) -> Any:
    """Mark `model` as holding its folder's weights (what a GGUF converted from the folder decodes like)."""
    setattr(model, AS_SAVED, True)
    return model


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def runs_on_llama_cpp(params: Any) -> bool:
    """Whether llama.cpp runs this decoding's strategy and rules."""
    from lmforge.decode.params import LLAMA_CPP_STRATEGIES

    return (params.strategy in LLAMA_CPP_STRATEGIES and params.cache == "dynamic" and not params.compile
            and not params.image_weight)


def model_on_torch_reason(model: Any, weights: str) -> str | None:
    """Why `model` decodes on torch under engine auto whatever the request (None: llama.cpp can hold it)."""
    if not getattr(model, AS_SAVED, False):
        return "its weights are not its folder's"
    if not llama_cpp_installed():
        return "llama-cpp-python is not installed (`make` installs it)"
    if type(model).__name__.startswith("Peft"):
        return "it is a PEFT model (merge it with `lmforge export` to decode it on llama.cpp)"
    if model.config.is_encoder_decoder:
        return "llama.cpp decodes decoder-only models"
    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"it is on {device}"
    return _FAILED.get((str(getattr(model, "name_or_path", "")), weights))


def llama_cpp_for(model: Any, weights: str) -> Any | None:
    """The llama.cpp runtime holding `model` at `weights` under engine auto, or None (torch decodes it); a model
    that cannot be converted is tried once and then decodes on torch."""
    from lmforge.decode.llama_cpp_engine import llama_cpp_runtime

    if model_on_torch_reason(model, weights) is not None:
        return None
    try:
        return llama_cpp_runtime(model, weights)
    except (ConfigError, ModelError) as failed:
        _FAILED[(str(getattr(model, "name_or_path", "")), weights)] = str(failed)
        return None


def choose_engine(params: Any, model: Any, torch_inputs: bool = False) -> str:
    """The engine a `decode` section decodes `model` with: its own engine, or for auto llama.cpp where the
    model and the decoding run there (else torch), said once per model and engine for a model loaded to decode."""
    if params.engine != "auto":
        return params.engine
    reason = torch_reason(params, model, torch_inputs)
    engine = "torch" if reason else "llama.cpp"
    if getattr(model, AS_SAVED, False):
        say_engine(str(getattr(model, "name_or_path", "")), engine, reason)
    return engine


def torch_reason(params: Any, model: Any, torch_inputs: bool = False) -> str | None:
    """Why engine auto decodes this on torch (None: on llama.cpp); `torch_inputs`: soft prompts or a prefill
    torch made."""
    if not runs_on_llama_cpp(params):
        return f"strategy {params.strategy}" + (" with image guidance" if params.image_weight else "") + \
            (" with cache static" if params.cache != "dynamic" else "") + " runs on torch"
    if torch_inputs:
        return "soft prompts and torch's prefills decode on torch"
    if llama_cpp_for(model, params.weights) is None:
        return model_on_torch_reason(model, params.weights)
    return None


def say_engine(folder: str, engine: str, reason: str | None = None) -> None:
    """`lmforge: engine auto decodes … on …` on stderr, once per model folder and engine."""
    if (folder, engine) in _SAID:
        return
    _SAID.add((folder, engine))
    print(f"lmforge: engine auto decodes {folder or 'the model'} on {engine}" + (f" ({reason})" if reason else ""),
          file=sys.stderr)
