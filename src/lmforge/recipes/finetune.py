"""`lmforge train`: read splits → build task → load model → train → evaluate → save."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, set_seed

from lmforge.config.validate import suggest
from lmforge.data.arrow import check_source_unchanged
from lmforge.data.params import with_absolute_paths
from lmforge.data.streaming import StreamedFeatures, StreamedRows, head_rows
from lmforge.errors import ConfigError, LmforgeError
from lmforge.evaluate.inference import predict_examples
from lmforge.evaluate.plots import plot_history, plot_preference, plot_rewards
from lmforge.evaluate.report import summary_line, write_report
from lmforge.files import clean_interrupted_writes, no_space
from lmforge.methods.base import TrainingSession
from lmforge.methods.freezing import parameter_counts
from lmforge.methods.registry import active_methods, check_methods
from lmforge.models.device import resolve_device, weight_dtype
from lmforge.models.export import set_dropout
from lmforge.models.hardware import resolve
from lmforge.models.lstm import build_lstm_dir, example_texts
from lmforge.models.quantization import prepare_for_adapters, quantized_base
from lmforge.models.resolve import SCRATCH_MODEL, portable_reference, resolve_model
from lmforge.recipes.evaluate import examples_to_score
from lmforge.runs.load import load_trained, task_tokenizer
from lmforge.runs.run_dir import (
    check_resumable,
    clean_restart,
    create_run_dir,
    discard_run_dir,
    load_run_config,
    model_dir,
    save_config,
)
from lmforge.runs.save import save_model
from lmforge.runs.schema import RunConfig
from lmforge.runs.served_task import served_task
from lmforge.tasks import Task, build_task
from lmforge.train.checkpoint import has_checkpoint, latest_state
from lmforge.train.loop import FitData, finished, fit
from lmforge.train.metrics_log import tensorboard_wanted
from lmforge.train.optimizers import check_optimizer
from lmforge.train.processes import check_launch, process_state
from lmforge.train.sharding import in_turn, wants_fsdp
from lmforge.train.tracking import check_trackers


def say(line: str) -> None:
    print(line, file=sys.stderr)


def check_train_device(name: str):
    """model.device for training: present on this machine; one process trains on one device, so cuda:N with
    N > 0 is chosen with CUDA_VISIBLE_DEVICES (accelerate places process k on cuda:k)."""
    device = resolve_device(name)
    if device.type == "cuda" and (device.index or 0) > 0:
        raise ConfigError(f"model.device {name}: training places process k on cuda:k; run with "
                          f"CUDA_VISIBLE_DEVICES={device.index} and model.device=cuda")
    return device


def quantized_training(config: RunConfig, task: Task, precision: str, device: torch.device) -> dict | None:
    """How the base loads for training (`quantized_base`): model.quantization trains adapters (QLoRA) on a
    frozen low-bit base in one unsharded process; a one-line ConfigError otherwise."""
    quantization = config.model.quantization
    if quantization != "none":
        if config.tuning.peft is None:
            raise ConfigError(f"model.quantization {quantization} freezes the base in low bits: train adapters on it "
                              "with tuning.peft.method=lora (QLoRA), or set model.quantization=none")
        if wants_fsdp(config.train.fsdp):
            raise ConfigError(f"model.quantization {quantization} works without train.fsdp; set "
                              "model.quantization=none")
    return quantized_base(quantization, task, config.task.name, precision, device)


def finetune(config: RunConfig, resume_dir: Path | None = None,
             on_validation: Callable[[int, float], None] | None = None) -> Path:
    """Train per `config` (or continue `resume_dir`); return the run directory. `on_validation(epoch, value)`
    sees each epoch's validation metric (hyper-parameter search prunes by raising there). A user error
    before the first checkpoint removes the run directory this call made, so the same output_dir works
    once the input is fixed."""
    check_launch()
    made: list[Path] = []
    try:
        try:
            return _finetune(config, resume_dir, on_validation, made)
        except OSError as error:  # e.g. the disk filled up while writing the model, a report or the data splits
            folder = resume_dir or (made[0] if made else Path(config.train.output_dir or "runs"))
            if (full := no_space(error, folder)) is not None:
                raise full from None
            raise
    except LmforgeError:
        for run_dir in made:
            if not has_checkpoint(run_dir):
                discard_run_dir(run_dir)
        raise


def _resume_point(resume_dir: Path) -> bool:
    """Make `resume_dir` ready to continue: undo writes a kill cut short; a run killed before its first
    checkpoint is emptied (its config kept) to start again. Whether there is a checkpoint to resume."""
    for folder in (resume_dir, resume_dir / "checkpoints", resume_dir / "data"):
        clean_interrupted_writes(folder)
    if has_checkpoint(resume_dir):
        return True
    say(f"lmforge: {resume_dir} stopped before its first checkpoint; starting it again from the beginning")
    clean_restart(resume_dir)
    return False


def _finetune(config: RunConfig, resume_dir: Path | None, on_validation: Callable[[int, float], None] | None,
              made: list[Path]) -> Path:
    started = time.perf_counter()
    resuming = False
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        check_resumable(resume_dir)
        config = load_run_config(resume_dir)
        check_source_unchanged(resume_dir)
        if process_state().is_main_process:
            resuming = _resume_point(resume_dir)
        else:
            resuming = has_checkpoint(resume_dir)
        if resuming and (resume_dir / "report.json").is_file():
            state = latest_state(resume_dir)
            if finished(state, config.train):
                say(f"lmforge: {resume_dir} finished training ({state.epoch} of {config.train.epochs} epochs, "
                    f"{state.global_step} steps{', stopped early' if state.stopped_early else ''}); nothing to resume — its model is in "
                    f"{resume_dir / 'model'}, its report in {resume_dir / 'report.md'}")
                return resume_dir
    else:
        config = config.model_copy(update={"data": with_absolute_paths(config.data)})
    params = config.train
    set_seed(params.seed)
    # Everything that can fail on user input happens before the run directory is created.
    from_scratch = config.model.name == SCRATCH_MODEL
    named_path = None if from_scratch else resolve_model(config.model.name, config.model.allow_network)
    check_trackers(params.tracking)
    tensorboard_wanted(params.tensorboard)  # true without the package: said before the run directory exists
    train_device = check_train_device(config.model.device)
    check_optimizer(params.optimizer, train_device)
    precision = resolve(params.precision, train_device.type)
    processes = process_state(train_device.type == "cpu")  # rank and world size under accelerate launch / torchrun
    session = TrainingSession(config, build_task(config.task), precision.precision, processes.num_processes,
                              open_run=lambda directory: (load_run_config(directory), model_dir(directory)),
                              load_run=lambda run: served_task(Path(run)))
    quantization = quantized_training(config, session.task, precision.precision, train_device)
    methods = active_methods(config.tuning)
    check_methods(methods, session)
    path = named_path
    for method in methods:
        path = method.base_path(path, session)
        session.task = method.derive_task(session.task)
    task = session.task
    if params.metric is not None and params.metric not in task.metric_names:
        raise ConfigError(f"train.metric '{params.metric}' is not a validation metric of {config.task.name}; choose one "
                          f"of: {', '.join(task.metric_names)}{suggest(params.metric, list(task.metric_names))}")
    splits = session.splits = task.read_splits(config.data, params.seed)
    for method in methods:
        method.extend_splits(session)
    main = processes.is_main_process
    if main:
        run_dir = resume_dir if resume_dir is not None else create_run_dir(config)
        if resume_dir is None:
            made.append(run_dir)
            save_config(config, run_dir)
        for name in ("train", "validation", "test"):
            split = getattr(splits, name)
            if isinstance(split, StreamedRows):  # where its rows come from, not a copy
                split.record(run_dir / "data" / f"{name}.jsonl")
            else:
                task.save_examples(split, run_dir / "data" / f"{name}.jsonl")
        if splits.skipped:
            say(f"lmforge: skipped {len(splits.skipped)} malformed rows (data.on_error=skip); first: {splits.skipped[0]}")
        labels = f"{len(splits.labels)} labels; " if splits.labels else ""
        if isinstance(splits.train, StreamedRows):
            forms = splits.train.forms
        else:
            forms = Counter(e.form for e in splits.train) if isinstance(splits.train, list) and splits.train \
                and hasattr(splits.train[0], "form") else Counter()
        if any(forms):
            say("lmforge: chat rows read as " + ", ".join(f"{count} {form}" for form, count in forms.items() if form))
        say(f"lmforge: {len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test rows, "
            f"{labels}run directory {run_dir}")
        if from_scratch and not resuming:  # the baseline's vocabulary comes from this run's training data
            build_lstm_dir(example_texts(splits.train), config.model.lstm, len(task.labels), run_dir / "init")
    shared = [str(run_dir) if main else None]
    broadcast_object_list(shared)  # every process learns the run directory the main one made
    run_dir = Path(shared[0])
    if from_scratch:
        path = str(run_dir / "init")
    session.base_path = path
    local_only = not config.model.allow_network
    tokenizer = session.tokenizer = task_tokenizer(task, path, local_only, config.model.trust_remote_code)
    max_length = config.data.max_length
    load_dtype = weight_dtype(config.model.dtype, train_device) if config.model.dtype != "auto" else None
    if quantization is not None:  # each process quantises its own copy on its own device
        quantization["device_map"] = {"": str(processes.device)}
    # a method's own model (continual learning: the previous run's), else the task's
    model = next((built for method in methods if (built := method.build_model(session)) is not None), None)
    if model is None and wants_fsdp(params.fsdp) and processes.num_processes > 1:
        model = in_turn(lambda: task.build_model(path, local_only, config.model.trust_remote_code, load_dtype), processes)
    elif model is None:  # model.dtype set: read straight in it (a bf16 base under LoRA never holds fp32 weights)
        model = task.build_model(path, local_only, config.model.trust_remote_code, load_dtype, quantization)
    if params.dropout is not None:
        set_dropout(model, params.dropout)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if quantization is not None:  # QLoRA: adapters train on the frozen low-bit base
        model = prepare_for_adapters(model)
    elif load_dtype is not None:  # tasks that cannot load in it, a continued run (PEFT keeps its adapters in fp32)
        model = model.to(load_dtype)
    for method in methods:
        model = method.apply(model, session)
    session.model = model
    trainable, total = parameter_counts(model)
    if main:
        say(f"lmforge: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%) in "
            f"{precision.precision} ({precision.reason})")

    if isinstance(splits.train, StreamedRows):
        train_features = StreamedFeatures(splits.train, lambda batch: task.encode(batch, tokenizer, max_length))
    else:
        train_features = task.encode(splits.train, tokenizer, max_length)
    baseline_examples = head_rows(splits.train)  # the scores' majority baseline: a streamed split's first rows
    data = FitData(
        train_features=train_features, validation_features=task.encode(splits.validation, tokenizer, max_length),
        validation_examples=splits.validation, train_examples=baseline_examples, pad_id=tokenizer.pad_token_id)

    def save_best(trained, weights: dict | None = None) -> None:
        save_model(trained, tokenizer, run_dir / "model", weights,
                   portable_reference(config.model.name) if path == named_path else None)

    session.run_dir, session.data = run_dir, data
    split_name, session.examples = examples_to_score(task, config, None, lambda split: getattr(splits, split))
    examples = session.examples
    for method in methods:
        method.before_fit(session)
    fit_started = time.perf_counter()
    state = fit(task, model, data, params, run_dir, save_best, resume=resuming, methods=methods,
                on_validation=on_validation, run_config=config.model_dump(mode="json"),
                cpu=train_device.type == "cpu")
    train_seconds = time.perf_counter() - fit_started
    if not main:
        return run_dir
    if state.history:
        plot_history(run_dir / "metrics.jsonl", params.metric or task.default_metric, run_dir / "history.png")
    if (run_dir / "metrics.jsonl").is_file():  # sequence-level training logs its rewards
        plot_rewards(run_dir / "metrics.jsonl", run_dir / "rewards.png")
        plot_preference(run_dir / "metrics.jsonl", run_dir / "preference.png")

    # Final report on the best model: the test split when there is one, else validation — whose scores the
    # best model already has (not decoded twice), unless this process did not see them (a resumed run).
    reused = split_name == "validation" and data.best_validation is not None and not any(
        method.reports_on_saved_model for method in methods)
    if examples:
        if reused:
            predictions, metrics = data.best_validation[0], dict(data.best_validation[1])
        else:
            task, model, tokenizer = session.task, session.model, session.tokenizer = load_trained(run_dir, config)
            for method in methods:
                task = session.task = method.report_task(task)
            predictions = predict_examples(task, model, tokenizer, examples, max_length, params.eval_batch_size,
                                           params.precision)
            metrics = task.score(predictions, examples, baseline_examples)
        for method in methods:
            method.report(session, metrics)
        metrics.update(split=split_name, best_epoch=state.best_epoch, stopped_early=state.stopped_early,
                       epochs_run=len(state.history), trainable_parameters=trainable, total_parameters=total,
                       precision=precision.precision, precision_reason=precision.reason,
                       train_seconds=round(train_seconds, 1))
        write_report(metrics, run_dir, f"{config.task.name} on the {split_name} split ({run_dir.name})",
                     predictions=predictions)
        print(f"{split_name}: {summary_line(metrics)}")
    print(f"lmforge: done in {time.perf_counter() - started:.0f} s; model in {run_dir / 'model'}, "
          f"report in {run_dir / 'report.md'}")
    return run_dir
