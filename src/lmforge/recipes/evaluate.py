"""`lmforge evaluate RUN_DIR [--data FILE]`: score a trained run on any labelled file."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample
from lmforge.data.splits import saved_split
from lmforge.data.streaming import head_rows
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate.inference import predict
from lmforge.evaluate.perturb import embedding_neighbours, perturb, vocabulary
from lmforge.evaluate.report import summary_line, write_report
from lmforge.models.resolve import SCRATCH_MODEL, resolve_model
from lmforge.runs.load import load_pretrained, load_trained
from lmforge.runs.run_dir import create_run_dir, load_run_config, save_config
from lmforge.runs.schema import RunConfig
from lmforge.tasks import build_task
from lmforge.tasks.base import Task


def examples_to_score(task: Task, config: RunConfig, data_file: str | None,
                      split: Callable[[str], list[Any]]) -> tuple[str, list[Any]]:
    """(name, examples): the labelled `data_file` when given, else the test split, else validation
    (`split(name)` returns a split's examples)."""
    if data_file is not None:
        return Path(data_file).stem, task.read_file(data_file, config.data, RowErrors(config.data.on_error), labelled=True)
    test = split("test")
    return ("test", test) if test else ("validation", split("validation"))


def evaluate(run_dir: Path, data_file: str | None = None, perturbed: bool = False, adapter: str | None = None,
             device: str | None = None, data_overrides: list[str] | None = None) -> dict:
    """Score the run's model (with `adapter` switched on, on `device`) on `data_file` (or on its own
    test/validation split); write a report. With `perturbed`, also score a copy with typos and
    embedding-neighbour word swaps."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir, data_overrides)
    task, model, tokenizer = load_trained(run_dir, config, adapter, device)
    name, examples = examples_to_score(task, config, data_file, lambda split: saved_split(task, run_dir, split))
    train = saved_split(task, run_dir, "train")
    out_dir = run_dir / "evaluations" / (name if adapter is None else f"{name}-{adapter}")
    robustness = robustness_check(task, model, tokenizer, config, examples, train, out_dir) if perturbed else None
    return _score_and_report(task, model, tokenizer, config, examples, name, data_file, out_dir, train, robustness)


def robustness_check(task: Task, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig,
                     examples: list[Any], train: list[Any], out_dir: Path) -> dict:
    """Scores on a perturbed copy of text examples (saved as perturbed.jsonl): 10% of words get a typo, 15%
    are swapped for their nearest training-vocabulary word in the *pretrained* model's embedding space, so
    runs from the same base and data (plain vs adversarial training) face the same copy. Seeded."""
    if not examples or not isinstance(examples[0], TextExample):
        raise ConfigError(f"--perturbed works on text examples (text-classification), not {config.task.name}")
    neighbours = embedding_neighbours(vocabulary([e.text for e in train]), tokenizer, pretrained_embeddings(config, model))
    rng = random.Random(0)
    changed = [dataclasses.replace(e, text=perturb(e.text, rng, neighbours)) for e in examples]
    task.save_examples(changed, out_dir / "perturbed.jsonl")
    features = task.encode(changed, tokenizer, config.data.max_length)
    predictions = predict(task, model, features, changed, config.train.eval_batch_size, tokenizer.pad_token_id,
                          config.train.precision)
    scores = task.score(predictions, changed, train)
    return {k: v for k, v in scores.items() if isinstance(v, float)}


def evaluate_pretrained(config: RunConfig, data_file: str | None = None) -> dict:
    """Score the config's model *before* training (e.g. an instruct model zero-shot) on the config's
    test split, else its validation split, or on `data_file`; the report goes to a new train.output_dir."""
    if config.model.name == SCRATCH_MODEL:
        raise DataError("model=lstm is built from training data; there is nothing to evaluate before training")
    task = build_task(config.task)
    splits = task.read_splits(config.data, config.train.seed)
    name, examples = examples_to_score(task, config, data_file, lambda split: getattr(splits, split))
    model, tokenizer = load_pretrained(task, config)
    out_dir = create_run_dir(config, kind="evaluate")
    save_config(config, out_dir)
    return _score_and_report(task, model, tokenizer, config, examples, name, data_file, out_dir,
                             head_rows(splits.train))


def pretrained_embeddings(config: RunConfig, trained: PreTrainedModel | None) -> torch.Tensor:
    """The input embeddings of the model the run started from (the trained ones for the from-scratch lstm)."""
    if config.model.name == SCRATCH_MODEL:
        return trained.get_input_embeddings().weight.detach()
    path = resolve_model(config.model.name, config.model.allow_network)
    base = AutoModel.from_pretrained(path, local_files_only=not config.model.allow_network,
                                     trust_remote_code=config.model.trust_remote_code)
    return base.get_input_embeddings().weight.detach()


def _score_and_report(task: Task, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig,
                      examples: list[Any], name: str, data_file: str | None, out_dir: Path, train: list[Any],
                      robustness: dict | None = None) -> dict:
    if not examples:
        raise DataError(f"{data_file or name}: no labelled rows to evaluate")
    features = task.encode(examples, tokenizer, config.data.max_length)
    predictions = predict(task, model, features, examples, config.train.eval_batch_size, tokenizer.pad_token_id,
                          config.train.precision, progress=True)
    metrics = task.score(predictions, examples, train)
    metrics["data"] = str(data_file or name)
    if robustness is not None:
        metrics["perturbed"] = robustness
    report = write_report(metrics, out_dir, f"{config.task.name} on {metrics['data']} ({out_dir.name})",
                          predictions=predictions)
    print(f"{name}: {summary_line(metrics)}")
    if robustness is not None:
        print(f"{name} perturbed: {summary_line(robustness)}")
    print(f"lmforge: report in {report}")
    return metrics
