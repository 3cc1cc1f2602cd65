"""`lmforge evaluate RUN_DIR [--data FILE]`: score a trained run on any labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.data.errors_policy import RowErrors
from lmforge.errors import DataError
from lmforge.evaluate.inference import predict
from lmforge.evaluate.report import summary_line, write_report
from lmforge.models.load import load_tokenizer
from lmforge.models.resolve import SCRATCH_MODEL, resolve_model
from lmforge.recipes.run_dir import create_run_dir, load_run_config, model_dir, save_config
from lmforge.recipes.schema import RunConfig
from lmforge.tasks import build_task
from lmforge.tasks.base import Task


def task_tokenizer(task: Task, path: str, local_files_only: bool = True,
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer, adapted by the task when it needs to (relation extraction adds entity markers)."""
    tokenizer = load_tokenizer(path, local_files_only, trust_remote_code)
    if hasattr(task, "adapt_tokenizer"):
        task.adapt_tokenizer(tokenizer)
    return tokenizer


def load_trained(run_dir: Path, config: RunConfig) -> tuple[Task, PreTrainedModel, PreTrainedTokenizerBase]:
    """(task, model, tokenizer) of a run's saved model."""
    folder = model_dir(run_dir)
    task = build_task(config.task).from_saved(folder)
    tokenizer = task_tokenizer(task, str(folder))
    model = task.build_model(str(folder), local_files_only=True, trust_remote_code=config.model.trust_remote_code)
    return task, model, tokenizer


def saved_split(task: Task, run_dir: Path, name: str) -> list[Any]:
    """A split the run saved under <run>/data/ (empty when it has none)."""
    path = Path(run_dir) / "data" / f"{name}.jsonl"
    return task.load_examples(path) if path.is_file() else []


def evaluate(run_dir: Path, data_file: str | None = None) -> dict:
    """Score the run's model on `data_file` (or on its own test/validation split); write a report."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    task, model, tokenizer = load_trained(run_dir, config)
    if data_file is not None:
        examples = task.read_file(data_file, config.data, RowErrors(config.data.on_error), labelled=True)
        name = Path(data_file).stem
    else:
        test = saved_split(task, run_dir, "test")
        name, examples = ("test", test) if test else ("validation", saved_split(task, run_dir, "validation"))
    return _score_and_report(task, model, tokenizer, config, examples, name, data_file, run_dir / "evaluations" / name,
                             saved_split(task, run_dir, "train"))


def evaluate_pretrained(config: RunConfig, data_file: str | None = None) -> dict:
    """Score the config's model *before* training (e.g. an instruct model zero-shot) on the config's
    test split, else its validation split, or on `data_file`; the report goes to a new train.output_dir."""
    if config.model.name == SCRATCH_MODEL:
        raise DataError("model=lstm is built from training data; there is nothing to evaluate before training")
    path = resolve_model(config.model.name, config.model.allow_network)
    task = build_task(config.task)
    splits = task.read_splits(config.data, config.train.seed)
    if data_file is not None:
        examples = task.read_file(data_file, config.data, RowErrors(config.data.on_error), labelled=True)
        name = Path(data_file).stem
    else:
        name, examples = ("test", splits.test) if splits.test else ("validation", splits.validation)
    local_only = not config.model.allow_network
    tokenizer = task_tokenizer(task, path, local_only, config.model.trust_remote_code)
    model = task.build_model(path, local_only, config.model.trust_remote_code)
    out_dir = create_run_dir(config)
    save_config(config, out_dir)
    return _score_and_report(task, model, tokenizer, config, examples, name, data_file, out_dir, splits.train)


def _score_and_report(task: Task, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig,
                      examples: list[Any], name: str, data_file: str | None, out_dir: Path, train: list[Any]) -> dict:
    if not examples:
        raise DataError(f"{data_file or name}: no labelled rows to evaluate")
    features = task.encode(examples, tokenizer, config.data.max_length)
    predictions = predict(task, model, features, examples, config.train.eval_batch_size, tokenizer.pad_token_id,
                          config.train.precision, progress=True)
    metrics = task.score(predictions, examples, train)
    metrics["data"] = str(data_file or name)
    report = write_report(metrics, out_dir, f"{config.task.name} on {metrics['data']} ({out_dir.name})",
                          predictions=predictions)
    print(f"{name}: {summary_line(metrics)}")
    print(f"lmforge: report in {report}")
    return metrics
