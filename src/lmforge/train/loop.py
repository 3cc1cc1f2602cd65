"""The one training loop: accelerate for devices, autocast and DDP; the task supplies the loss.

Resumable mid-epoch: the batch order is a pure function of (seed, epoch), and checkpoints hold
the weights, optimizer, scheduler and RNG states taken at an optimizer-step boundary.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from lmforge.data.arrow import feature_lengths
from lmforge.data.batching import BatchOrder, pad_batch
from lmforge.data.streaming import StreamedFeatures, StreamOrder
from lmforge.errors import ConfigError, TrainingError
from lmforge.evaluate.inference import predict
from lmforge.methods.base import LossFn, TuningMethod
from lmforge.models.hardware import resolve
from lmforge.models.precision import autocast_for
from lmforge.tasks.base import Task
from lmforge.train.checkpoint import (
    SHARDS,
    LoopState,
    has_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_process_rng,
    staging_folder,
)
from lmforge.train.metrics_log import MetricsLog
from lmforge.train.optimizers import build_optimizer, build_scheduler
from lmforge.train.params import TrainParams
from lmforge.train.processes import process_state
from lmforge.train.progress import ProgressLines
from lmforge.train.sharding import check_fsdp, full_state_dict, save_sharded, shard_model, wants_fsdp
from lmforge.train.tracking import Trackers

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass
class FitData:
    """What the loop trains and validates on (features are already tokenised)."""

    train_features: list[dict]
    validation_features: list[dict]
    validation_examples: list
    train_examples: list
    pad_id: int
    best_validation: tuple[list[dict], dict] | None = None  # (predictions, scores) of the best model, once scored


def make_accelerator(cpu: bool = False) -> Accelerator:
    """Devices and DDP come from accelerate (`cpu`: model.device cpu on a machine with an accelerator);
    precision is ours (autocast_for), so it never depends on accelerate's process-wide state and can differ
    between runs in one process."""
    process_state(cpu)  # first, so that processes launched without a GPU see each other
    return Accelerator(mixed_precision="no", cpu=cpu)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass instead of keeping them (less memory, ~30% more time)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "supports_gradient_checkpointing", False):
        raise ConfigError(f"train.gradient_checkpointing: {type(target).__name__} does not support it; set it to false")
    target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    target.config.use_cache = False


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only, not on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY) or param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


LOWER_IS_BETTER = ("loss", "perplexity")


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def is_better(value: float, best: float | None, metric: str) -> bool:
    return best is None or (value < best if lower_is_better(metric) else value > best)


@dataclass
class _Loop:
    """The pieces one training run steps together; only the main process writes files."""

    task: Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Accelerator
    order: BatchOrder
    data: FitData
    params: TrainParams
    state: LoopState
    log: MetricsLog | None
    run_dir: Path
    save_model_fn: Callable[[PreTrainedModel, dict | None], None]
    methods: Sequence[TuningMethod]
    loss: LossFn  # the task's loss as the methods wrap it
    on_validation: Callable[[int, float], None] | None = None
    last_checkpoint: float = field(default_factory=time.monotonic)
    scaler: torch.amp.GradScaler | None = None  # fp16: scales the loss so small gradients survive
    sharded: bool = False  # FSDP2: every process holds a shard; checkpoints and saves need all of them

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(self.scaler.scale(loss) if self.scaler is not None else loss)

    def optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    @property
    def unwrapped(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model)

    def checkpoint(self) -> None:
        if self.scaler is not None:
            self.state.grad_scaler = self.scaler.state_dict()
        if self.sharded:  # every process writes its shards into the folder the main one made
            folder = [str(staging_folder(self.run_dir)) if self.accelerator.is_main_process else None]
            broadcast_object_list(folder)
            staging = Path(folder[0])
            save_sharded(staging / SHARDS, self.model, self.optimizer)
            save_process_rng(staging, self.accelerator.process_index)
            self.accelerator.wait_for_everyone()
            if self.accelerator.is_main_process:
                save_checkpoint(self.run_dir, self.state, None, None, self.scheduler, self.params.keep_checkpoints,
                                staging)
        elif self.accelerator.is_main_process:
            save_checkpoint(self.run_dir, self.state, self.unwrapped, self.optimizer, self.scheduler,
                            self.params.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = time.monotonic()

    def checkpoint_due(self) -> bool:
        """Whether train.save_every_minutes have passed since the last checkpoint (the main process decides
        for all, at logging steps, when there are several)."""
        minutes = self.params.save_every_minutes
        if minutes is None:
            return False
        due = time.monotonic() - self.last_checkpoint >= minutes * 60
        if self.accelerator.num_processes == 1:
            return due
        if self.state.global_step % self.params.log_every_steps:
            return False
        decision = [due]
        broadcast_object_list(decision)
        return bool(decision[0])

    def save_model(self) -> None:
        weights = full_state_dict(self.model) if self.sharded else None  # gathered by every process
        if self.accelerator.is_main_process:
            self.save_model_fn(self.unwrapped, weights)
        self.accelerator.wait_for_everyone()

    def write_log(self, entry: dict) -> None:
        if self.log is not None:
            self.log.write(entry)

    def say(self, line: str) -> None:
        if self.accelerator.is_main_process:
            print(line, file=sys.stderr)


def fit(task: Task, model: PreTrainedModel, data: FitData, params: TrainParams, run_dir: Path,
        save_model_fn: Callable[[PreTrainedModel, dict | None], None], resume: bool = False,
        methods: Sequence[TuningMethod] = (), on_validation: Callable[[int, float], None] | None = None,
        run_config: dict | None = None, cpu: bool = False) -> LoopState:
    """Train `model` in place; `save_model_fn(model, weights)` is called whenever it becomes the best (or final)
    one (`weights`: its gathered state dict when sharded, else None).
    `methods` (the run's tuning methods) shape the step: parameter groups, the loss, extra gradients, the
    batch order and the logged numbers; `on_validation(epoch, value)` sees each epoch's validation metric
    (hyper-parameter search prunes there by raising); `run_config` is what experiment trackers record as the
    run's parameters; `cpu` trains on the CPU (model.device cpu, also where an accelerator exists)."""
    accelerator = make_accelerator(cpu)
    order = next((found for method in methods if (found := method.batch_order(
        task, data.train_features, params.batch_size, params.seed, accelerator.process_index,
        accelerator.num_processes)) is not None), None)  # e.g. multi-task sampling (the strategy network)
    if order is None and isinstance(data.train_features, StreamedFeatures):
        order = StreamOrder(data.train_features, params.batch_size, params.seed, accelerator.process_index,
                            accelerator.num_processes)
    elif order is None:
        order = BatchOrder(feature_lengths(data.train_features), params.batch_size, params.seed,
                           group_by_length=params.group_by_length, process_index=accelerator.process_index,
                           num_processes=accelerator.num_processes)
    total_steps = math.ceil(len(order) / params.gradient_accumulation_steps) * params.epochs
    if params.max_steps is not None:
        total_steps = min(total_steps, params.max_steps)
    warmup = params.warmup_steps if params.warmup_steps is not None else int(params.warmup_ratio * total_steps)
    if params.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    sharded = wants_fsdp(params.fsdp)
    if sharded:  # shard first: the optimizer then holds only this process's part of each parameter
        check_fsdp(model, [m.field_name() for m in methods if not m.shardable], accelerator.num_processes,
                   params.optimizer)
        model = shard_model(model, accelerator.device)
    groups = param_groups(model, params.weight_decay)
    for method in methods:
        groups = method.param_groups(model, groups, params.lr)
    optimizer = build_optimizer(params.optimizer, groups, params.lr)
    scheduler = build_scheduler(params.scheduler, optimizer, warmup, total_steps)
    if not sharded:
        model, optimizer = accelerator.prepare(model, optimizer)
    precision = resolve(params.precision, accelerator.device.type).precision
    scaler = torch.amp.GradScaler(accelerator.device.type) if precision == "fp16" else None
    state = LoopState()
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        state = load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler,
                                accelerator.process_index)
        if scaler is not None and state.grad_scaler is not None:
            scaler.load_state_dict(state.grad_scaler)
    log = None
    if accelerator.is_main_process:
        trackers = Trackers(params.tracking, run_dir, run_config or {"train": params.model_dump(mode="json")},
                            params.tracking_uri, params.experiment) if params.tracking else None
        log = MetricsLog(run_dir, params.tensorboard, resume_step=state.global_step if resume else None,
                         trackers=trackers)
    loss = task.loss
    for method in methods:
        loss = method.wrap_loss(loss, task)
    loop = _Loop(task, model, optimizer, scheduler, accelerator, order, data, params, state, log, run_dir, save_model_fn,
                 methods, loss, on_validation, scaler=scaler, sharded=sharded)
    if resume:
        loop.say(f"lmforge: resuming from {checkpoint} (epoch {state.epoch + 1}, step {state.global_step})")
    model.train()
    try:
        while not finished(state, params):
            _train_epoch(loop)
            if not state.stopped_early:  # (an evaluation inside the epoch may have stopped it)
                _end_epoch(loop)
            state.epoch += 1
            state.batches_done = state.epoch_batches = 0
            state.epoch_loss_sum = 0.0
            loop.checkpoint()
    finally:
        if log is not None:
            log.close()
    if not data.validation_features:
        loop.save_model()
    return state


def finished(state: LoopState, params: TrainParams) -> bool:
    """Whether training is over: every epoch run, stopped early, or train.max_steps reached."""
    return state.epoch >= params.epochs or state.stopped_early or (
        params.max_steps is not None and state.global_step >= params.max_steps)


def _train_epoch(loop: _Loop) -> None:
    state, params, accelerator, model = loop.state, loop.params, loop.accelerator, loop.model
    loop.order.set_epoch(state.epoch, skip=state.batches_done)
    batches = len(loop.order)
    accumulate = params.gradient_accumulation_steps
    progress = tqdm(total=batches, initial=state.batches_done, desc=f"epoch {state.epoch + 1}/{params.epochs}",
                    disable=None if accelerator.is_main_process else True, leave=False, file=sys.stderr)
    later = (params.epochs - state.epoch - 1) * batches  # the run's batches after this epoch
    if params.max_steps is not None:
        later = max(0, min(later, (params.max_steps - state.global_step) * accumulate - (batches - state.batches_done)))
    lines = ProgressLines(f"epoch {state.epoch + 1}/{params.epochs}", batches, state.batches_done, params.batch_size,
                          params.progress_every_seconds, enabled=accelerator.is_main_process, later=later)
    for features in loop.order.feature_batches(loop.data.train_features):
        position = state.batches_done  # index of this batch within the epoch
        window_start = position - position % accumulate
        window = min(accumulate, batches - window_start)  # the last window of an epoch may be shorter
        sync = position + 1 == window_start + window
        batch = {k: v.to(accelerator.device) for k, v in pad_batch(features, loop.data.pad_id).items()}
        context = contextlib.nullcontext() if sync else accelerator.no_sync(model)
        with context, autocast_for(params.precision, accelerator.device):
            loss, _ = loop.loss(model, batch)
            value = loss.item()
            check_finite(value, loop)
            loop.backward(loss / window)
            for method in loop.methods:
                method.after_backward(model, lambda batch=batch, window=window: loop.task.loss(model, batch)[0] / window)
        state.epoch_loss_sum += value
        state.epoch_batches += 1
        state.batches_done += 1
        progress.update(1)
        lines.update(state.batches_done, state.epoch_loss_sum / state.epoch_batches)
        if not sync:
            continue
        if params.max_grad_norm is not None:
            if loop.scaler is not None:
                loop.scaler.unscale_(loop.optimizer)
            accelerator.clip_grad_norm_(model.parameters(), params.max_grad_norm)
        loop.optimizer_step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        mean_loss = state.epoch_loss_sum / state.epoch_batches
        if state.global_step % params.log_every_steps == 0:
            loop.write_log({"step": state.global_step, "epoch": state.epoch + state.batches_done / batches,
                            "train_loss": mean_loss, "lr": loop.scheduler.get_last_lr()[0]}
                           | {k: v for m in loop.methods for k, v in m.step_stats().items()})  # reward, KL, …
            progress.set_postfix(loss=f"{mean_loss:.4f}")
        every = params.eval_every_steps
        if every and state.global_step % every == 0 and state.batches_done < batches and loop.data.validation_features \
                and not finished(state, params):  # (a run that ends here is scored once, at the epoch's end)
            _validate(loop, state.epoch + state.batches_done / batches,
                      f"epoch {state.epoch + 1}/{params.epochs}, step {state.global_step}")
            model.train()
        if finished(state, params):
            break
        by_steps = params.save_every_steps and state.global_step % params.save_every_steps == 0
        if state.batches_done < batches and (by_steps or loop.checkpoint_due()):
            loop.checkpoint()
    progress.close()


def check_finite(loss: float, loop: _Loop) -> None:
    """Stop with one line when the loss is NaN or infinite: nothing from this step on is saved, so the last
    checkpoint is the last good state."""
    if math.isfinite(loss):
        return
    state = loop.state
    kept = f"the last good checkpoint is kept ({latest_checkpoint(loop.run_dir)})" if has_checkpoint(loop.run_dir) \
        else "no checkpoint was written yet"
    raise TrainingError(f"the training loss became {loss} at step {state.global_step + 1} (epoch {state.epoch + 1}, "
                        f"batch {state.batches_done + 1}); {kept}. Try a lower train.lr (now {loop.params.lr:g}), "
                        "train.max_grad_norm: 1.0 or train.precision: fp32")


def _end_epoch(loop: _Loop) -> None:
    _validate(loop, loop.state.epoch + 1, f"epoch {loop.state.epoch + 1}/{loop.params.epochs}")


def _validate(loop: _Loop, epoch: float, name: str) -> None:
    """Score the validation split (at an epoch's end, or every train.eval_every_steps); keep the best model;
    count evaluations without improvement for early stopping."""
    state, params, data = loop.state, loop.params, loop.data
    metric = params.metric or loop.task.default_metric
    record = {"epoch": round(epoch, 4), "step": state.global_step,
              "train_loss": state.epoch_loss_sum / max(state.epoch_batches, 1)}
    line = f"{name}: train loss {record['train_loss']:.4f}"
    if data.validation_features:
        predictions = predict(loop.task, loop.unwrapped, data.validation_features, data.validation_examples,
                              params.eval_batch_size, data.pad_id, params.precision)
        scores = loop.task.score(predictions, data.validation_examples, data.train_examples)
        value = float(scores[metric])
        record.update({k: v for k, v in scores.items() if isinstance(v, float)})
        line += f", validation {metric} {value:.4f}"
        if is_better(value, state.best_metric, metric):
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
            data.best_validation = (predictions, scores)
            loop.save_model()
            line += " (best so far, saved)"
        else:
            state.bad_epochs += 1
            if params.patience is not None and state.bad_epochs >= params.patience:
                state.stopped_early = True
                line += f" — no improvement for {state.bad_epochs} evaluations, stopping early"
    state.history.append(record)
    loop.write_log({"validation": record})
    loop.say(line)
    if data.validation_features and loop.on_validation is not None:
        loop.on_validation(len(state.history), value)
