"""Attaching a fresh PEFT adapter (LoRA, DoRA, IA³, prompt or prefix tuning) for training, with the modules the
base checkpoint lacks (freshly initialised heads, poolers) training fully and saved beside it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
)
from safetensors import safe_open

from lmforge.errors import ConfigError
from lmforge.methods.peft.params import PeftParams

#: the task-model class suffix -> peft's task type (which also keeps the task head trainable)
TASK_TYPES = {"ForSequenceClassification": TaskType.SEQ_CLS, "ForTokenClassification": TaskType.TOKEN_CLS,
              "ForQuestionAnswering": TaskType.QUESTION_ANS, "ForCausalLM": TaskType.CAUSAL_LM,
              "ForConditionalGeneration": TaskType.SEQ_2_SEQ_LM, "ForSeq2SeqLM": TaskType.SEQ_2_SEQ_LM}


def task_type_of(model: torch.nn.Module) -> TaskType | None:
    name = type(model).__name__
    return next((kind for suffix, kind in TASK_TYPES.items() if name.endswith(suffix)), None)


def peft_config(params: PeftParams, model: torch.nn.Module, modules_to_save: list[str] | None = None):
    """The peft config object for `params` and this model; `modules_to_save` train fully and are saved too."""
    task_type = task_type_of(model)
    if params.method in ("prompt", "prefix") and task_type is None:
        raise ConfigError(f"tuning.peft.method={params.method} needs a standard HF task model; "
                          f"{type(model).__name__} is not one (use lora, dora or ia3)")
    if params.method in ("lora", "dora"):
        return LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout, use_dora=params.method == "dora",
                          target_modules=params.target_modules or "all-linear", task_type=task_type,
                          modules_to_save=modules_to_save, exclude_modules=modules_to_save)  # they train fully
    if params.method == "ia3":
        return IA3Config(target_modules=params.target_modules, task_type=task_type, modules_to_save=modules_to_save,
                         feedforward_modules=[] if params.target_modules else None)
    kind = PromptTuningConfig if params.method == "prompt" else PrefixTuningConfig
    return kind(num_virtual_tokens=params.num_virtual_tokens, task_type=task_type, modules_to_save=modules_to_save)


def attach(model: torch.nn.Module, params: PeftParams, modules_to_save: list[str] | None = None) -> PeftModel:
    """`model` wrapped with a fresh adapter; only the adapter and `modules_to_save` (the task head) train."""
    try:
        return get_peft_model(model, peft_config(params, model, modules_to_save or None), adapter_name=params.adapter_name)
    except ValueError as exc:  # e.g. target modules not found in the model
        raise ConfigError(f"tuning.peft: {str(exc).splitlines()[0]}") from None


def checkpoint_keys(folder: str | Path) -> set[str]:
    """Tensor names in a local HF folder's safetensors weights (sharded or not); empty if there are none."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    keys: set[str] = set()
    for name in files:
        if (folder / name).is_file():
            with safe_open(str(folder / name), framework="pt") as handle:
                keys.update(handle.keys())
    return keys


def newly_initialised_modules(model: torch.nn.Module, folder: str | Path) -> list[str]:
    """Modules whose parameters the checkpoint lacks (names matched up to the task model's prefix, e.g.
    `bert.pooler.dense.weight` against `pooler.dense.weight`). These must train or be saved with an adapter,
    or a reload would initialise them afresh."""
    keys = checkpoint_keys(folder)
    if not keys:
        return []
    missing = set()
    for name, _ in model.named_parameters():
        if name not in keys and not any(name.endswith("." + key) or key.endswith("." + name) for key in keys):
            missing.add(name.rsplit(".", 1)[0])
    return sorted(missing)
