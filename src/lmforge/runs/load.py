"""Load what a run directory holds: its model (a full model, a PEFT adapter on its base, a strategy network)
with its task and tokenizer, its saved splits; and a config's model before training."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.methods.strategy_network.experts import is_strategy_network_dir, load_strategy_network
from lmforge.methods.strategy_network.params import StrategyNetworkParams
from lmforge.methods.strategy_network.task import with_strategy_network
from lmforge.models.adapters import base_model_path, is_adapter_dir, load_adapter
from lmforge.models.device import place, resolve_device, weight_dtype
from lmforge.models.hardware import choose_precision, device_capabilities
from lmforge.models.labels import labelled_config_dir
from lmforge.models.load import load_tokenizer
from lmforge.models.quantization import quantized_base
from lmforge.models.resolve import resolve_model
from lmforge.runs.adapters import check_adapter, side_adapters
from lmforge.runs.run_dir import model_dir
from lmforge.runs.schema import RunConfig
from lmforge.tasks import build_task
from lmforge.tasks.base import Task


def task_tokenizer(task: Task, path: str, local_files_only: bool = True,
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer, adapted by the task when it needs to (relation extraction adds entity markers)."""
    tokenizer = load_tokenizer(path, local_files_only, trust_remote_code)
    if hasattr(task, "adapt_tokenizer"):
        task.adapt_tokenizer(tokenizer)
    return tokenizer


def load_trained(run_dir: Path, config: RunConfig, adapter: str | None = None,
                 device: str | None = None) -> tuple[Task, PreTrainedModel, PreTrainedTokenizerBase]:
    """(task, model, tokenizer) of a run's saved model on `device` (default the run's model.device); a PEFT
    run with `adapter` (a name from `lmforge adapters list`) loads its adapters side by side and switches that
    one on."""
    target = resolve_device(device or config.model.device)  # present here, before anything loads
    dtype = weight_dtype(config.model.dtype, target)
    task, model, tokenizer = _load_trained(run_dir, config, adapter, dtype, target)
    return task, place(model, device or config.model.device, config.model.dtype), tokenizer


def base_quantization(task: Task, config: RunConfig, device: torch.device) -> dict | None:
    """How the config's base loads on `device` (model.quantization; checked), computing in its train.precision."""
    precision = choose_precision(config.train.precision, device_capabilities(device.type)).precision
    return quantized_base(config.model.quantization, task, config.task.name, precision, device)


def _load_trained(run_dir: Path, config: RunConfig, adapter: str | None, dtype: torch.dtype,
                  device: torch.device) -> tuple[Task, PreTrainedModel, PreTrainedTokenizerBase]:
    folder = model_dir(run_dir)
    check_adapter(run_dir, adapter)
    task = build_task(config.task)
    if is_strategy_network_dir(folder):  # experts + router; the task routes each input
        task = with_strategy_network(task, config.tuning.strategy_network or StrategyNetworkParams())
        tokenizer = task_tokenizer(task, str(folder))
        model, task.experts = load_strategy_network(folder, lambda path: task.build_model(
            path, local_files_only=True, trust_remote_code=config.model.trust_remote_code, dtype=dtype))
        return task, model, tokenizer
    task = task.from_saved(labelled_config_dir(folder))
    tokenizer = task_tokenizer(task, str(folder))
    if is_adapter_dir(folder):  # a PEFT run: the base model (quantised as it trained) plus the adapter and head
        base = task.build_model(base_model_path(folder), local_files_only=True,
                                trust_remote_code=config.model.trust_remote_code, dtype=dtype,
                                quantization=base_quantization(task, config, device))
        side = side_adapters(run_dir) if adapter is not None else {}
        return task, load_adapter(base, folder, side, adapter), tokenizer
    model = task.build_model(str(folder), local_files_only=True, trust_remote_code=config.model.trust_remote_code,
                             dtype=dtype)
    return task, model, tokenizer


def load_pretrained(task: Task, config: RunConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The config's model as it comes (untrained, with `task`'s head) on model.device, and its tokenizer."""
    device = resolve_device(config.model.device)
    path = resolve_model(config.model.name, config.model.allow_network)
    local_only = not config.model.allow_network
    tokenizer = task_tokenizer(task, path, local_only, config.model.trust_remote_code)
    dtype, quantization = weight_dtype(config.model.dtype, device), base_quantization(task, config, device)
    model = task.build_model(path, local_only, config.model.trust_remote_code, dtype, quantization)
    return place(model, config.model.device, config.model.dtype), tokenizer
