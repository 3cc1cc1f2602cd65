"""`lmforge evaluate RUN_DIR [--data FILE]`: score a trained run on any labelled file."""

from __future__ import annotations

from pathlib import Path

from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import check_labels, read_examples
from lmforge.data.params import DataParams
from lmforge.errors import DataError
from lmforge.evaluate.inference import predict
from lmforge.evaluate.report import summary_line, write_report
from lmforge.models.load import load_tokenizer
from lmforge.recipes.run_dir import load_run_config, model_dir
from lmforge.recipes.schema import RunConfig
from lmforge.tasks import TASKS

SAVED_SPLIT = DataParams(text_column="text", label_column="labels", text_pair_column=None)


def load_trained(run_dir: Path, config: RunConfig):
    """(task, model, tokenizer) of a run's saved model."""
    folder = model_dir(run_dir)
    task = TASKS[config.task.name].from_saved(folder, config.task)
    model = task.build_model(str(folder), local_files_only=True, trust_remote_code=config.model.trust_remote_code)
    return task, model, load_tokenizer(str(folder))


def read_saved_split(run_dir: Path, name: str, config: RunConfig):
    """A split the run saved under <run>/data/ (jsonl with a `labels` list)."""
    pair = "text_pair" if config.data.text_pair_column else None
    params = SAVED_SPLIT.model_copy(update={"text_pair_column": pair})
    path = Path(run_dir) / "data" / f"{name}.jsonl"
    return read_examples(path, params, multi_label=True) if path.is_file() else []


def evaluate(run_dir: Path, data_file: str | None = None) -> dict:
    """Score the run's model on `data_file` (or on its own test/validation split); write a report."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    task, model, tokenizer = load_trained(run_dir, config)
    train = read_saved_split(run_dir, "train", config)
    if data_file is not None:
        errors = RowErrors(config.data.on_error)
        examples = read_examples(data_file, config.data, config.task.multi_label, errors)
        examples = check_labels(examples, task.labels, errors)
        name, out_dir = Path(data_file).stem, run_dir / "evaluations" / Path(data_file).stem
    else:
        name = "test" if read_saved_split(run_dir, "test", config) else "validation"
        examples, out_dir = read_saved_split(run_dir, name, config), run_dir / "evaluations" / name
    if not examples:
        raise DataError(f"{data_file or name}: no labelled rows to evaluate")
    predictions = predict(task, model, task.encode(examples, tokenizer, config.data.max_length),
                          config.train.eval_batch_size, tokenizer.pad_token_id, config.train.precision, progress=True)
    metrics = task.score(predictions, examples, train)
    metrics["data"] = str(data_file or name)
    report = write_report(metrics, out_dir, f"{config.task.name} on {metrics['data']} ({run_dir.name})")
    print(f"{name}: {summary_line(metrics)}")
    print(f"lmforge: report in {report}")
    return metrics
