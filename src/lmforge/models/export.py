"""Save models in plain Hugging Face format, atomically; set dropout."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.files import STAGING_PREFIX, SWAPPED_PREFIX


def save_pretrained_atomic(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path,
                           weights: dict | None = None) -> Path:
    """save_pretrained into a staging folder, then swap it into place (safetensors weights; `weights`: the state
    dict to write instead of the model's own, e.g. gathered from a sharded model)."""
    return write_folder_atomic(target, lambda staging: model.save_pretrained(
        staging, safe_serialization=True, state_dict=weights), tokenizer)


def write_folder_atomic(target: Path, write: Callable[[Path], None], tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """`write(staging)` (and the tokenizer) into a staging folder, then swap it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=target.parent))
    try:
        write(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if target.exists():
            old = target.with_name(SWAPPED_PREFIX + target.name)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout")


def set_dropout(model: PreTrainedModel, probability: float) -> int:
    """Set every dropout module (and the config's dropout fields) to `probability`; returns modules changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = probability
            changed += 1
    for key in DROPOUT_KEYS:
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, probability)
    return changed
