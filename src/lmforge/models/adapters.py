"""PEFT adapter folders through `peft`: save, load, merge, and the base model they were trained on (attaching a
fresh adapter for training is the peft method's: `lmforge.methods.peft.attach`).

A PEFT run's `model/` holds the adapter (adapter_config.json + adapter_model.safetensors, task head
included), the base model's config with the labels, and the tokenizer; `adapters/<name>/` holds more
adapters on the same base, added with `lmforge adapters add` and chosen at load time (`--adapter`).
`lmforge export` merges LoRA/DoRA/IA³ into the base weights so the result loads in plain transformers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lmforge.errors import ModelError
from lmforge.models.labels import LABELLED_CONFIG_DIR

if TYPE_CHECKING:  # imported where used: a process that never loads an adapter does without peft (~190 MB)
    from peft import PeftModel

ADAPTER_CONFIG = "adapter_config.json"
#: beside the labelled config: the base model as the user named it (an alias, a folder or a hub id)
BASE_REFERENCE = "base_model.json"
def is_adapter_dir(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def base_model_path(folder: Path) -> str:
    """The base model an adapter folder was trained on: the path (or hub id) peft recorded when it is here,
    else the reference the run named, resolved on this machine (a packaged alias is found wherever it is
    installed), so a run copied to another machine loads there."""
    from lmforge.models.resolve import looks_like_path, resolve_model

    recorded = json.loads((Path(folder) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if recorded and (Path(recorded).exists() or not looks_like_path(recorded) and recorded.count("/") == 1):
        return recorded  # a folder here, or a hub id (read from the hub cache)
    reference_file = Path(folder) / LABELLED_CONFIG_DIR / BASE_REFERENCE
    reference = json.loads(reference_file.read_text(encoding="utf-8"))["reference"] if reference_file.is_file() else None
    if reference is None or reference == recorded:
        raise ModelError(f"{folder}: the adapter's base model {recorded!r} is not on this machine; put it back there "
                         f"(or export the merged model where it is)")
    try:
        return resolve_model(reference)
    except ModelError as error:
        raise ModelError(f"{folder}: the adapter's base model {recorded!r} is not on this machine, and its reference "
                         f"{reference!r} does not resolve here ({error})") from None


def save_adapter(model: PeftModel, folder: Path, base_reference: str | None = None) -> None:
    """The adapter (and task head) into `folder`, as peft writes it (transformers' pipeline loads it on its base),
    and the base config with the task's labels into folder/head/, with the base's reference as the run named
    it (`base_reference`: an alias or hub id travels to other machines; peft's record is this machine's path)."""
    model.save_pretrained(folder, safe_serialization=True)
    adapter_name = next(iter(model.peft_config))
    if adapter_name != "default":  # peft nests non-default adapters in a subfolder; keep one flat layout
        nested = Path(folder) / adapter_name
        for item in nested.iterdir():
            item.replace(Path(folder) / item.name)
        nested.rmdir()
    model.get_base_model().config.save_pretrained(Path(folder) / LABELLED_CONFIG_DIR)
    if base_reference is not None:
        (Path(folder) / LABELLED_CONFIG_DIR / BASE_REFERENCE).write_text(
            json.dumps({"reference": base_reference}) + "\n", encoding="utf-8")


def load_adapter(base: torch.nn.Module, folder: Path, side_by_side: dict[str, Path] | None = None,
                 active: str | None = None) -> PeftModel:
    """`base` (the task model built on base_model_path) with the saved adapter, for inference; adapters in
    `side_by_side` (name -> folder) are loaded beside it and `active` (a name from there) is switched on."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
    for name, other in (side_by_side or {}).items():
        model.load_adapter(str(other), adapter_name=name, is_trainable=False)
    if active is not None:
        model.set_adapter(active)
    return model


def merged(model: PeftModel) -> torch.nn.Module:
    """A plain transformers model with the adapter folded into its weights (LoRA, DoRA, IA³)."""
    config = next(iter(model.peft_config.values()))
    if config.is_prompt_learning:
        raise ModelError(f"a {config.peft_type.value.lower()} adapter adds virtual tokens and cannot be merged into the weights; "
                         f"load the run with lmforge (or peft) instead")
    return model.merge_and_unload()


@contextmanager
def adapter_on(model: PeftModel, name: str | None) -> Iterator[None]:
    """`name`, one of the model's adapters, switched on for the block; None: the base alone (adapters off)."""
    if name is None:
        with model.disable_adapter():
            yield
        return
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)
