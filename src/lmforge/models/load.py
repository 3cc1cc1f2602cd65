"""Load tokenizers (with a pad token) from a resolved reference, and extra modules saved beside a model's weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from lmforge.errors import ModelError


def load_tokenizer(path: str, local_files_only: bool = True, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer; decoder-only models without a pad token pad with EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer in {path} has neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def saved_submodule(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The weights of submodule `name` (e.g. a task's head attached to an HF model) saved in the folder's
    model.safetensors, keys relative to the submodule; {} when the folder has none (a base checkpoint)."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return {}
    marker = name + "."
    with safe_open(str(weights), framework="pt") as handle:
        return {key[len(marker):]: handle.get_tensor(key) for key in handle.keys() if key.startswith(marker)}


@contextlib.contextmanager
def quiet_about_own_keys(saved: dict[str, torch.Tensor]) -> Iterator[None]:
    """While a model whose folder holds a task's own submodule (`saved`, from `saved_submodule`) loads,
    transformers' load report (which lists those keys as UNEXPECTED) stays quiet; the task loads them itself."""
    if not saved:
        yield
        return
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
