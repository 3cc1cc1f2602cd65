"""Run directories: created fresh (never overwritten), reopened for resume, evaluate and predict."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from lmforge import __version__
from lmforge.config.loader import apply_overrides, load_yaml
from lmforge.config.validate import validate_config
from lmforge.errors import ConfigError, RunDirError
from lmforge.files import (
    STAGING_PREFIX,
    SWAPPED_PREFIX,
    atomic_write_text,
    check_writable_folder,
    discard_folder,
    remove_entries,
)
from lmforge.runs.schema import RunConfig
from lmforge.train.checkpoint import has_checkpoint, latest_checkpoint

MARKER = ".lmforge-run"  # written first into every run directory lmforge makes: only such a folder is resumed or cleaned
#: the top-level entries lmforge writes into a run directory: the only ones a clean restart removes
RUN_ENTRIES = ("data", "checkpoints", "model", "init", "metrics.jsonl", "tensorboard", "tracking.json", "report.md",
               "report.json", "predictions.jsonl", "confusion_matrix.png", "history.png", "rewards.png", "preference.png",
               "reference_logps.json",
               "evaluations", "adapters", STAGING_PREFIX + "*", SWAPPED_PREFIX + "*")


def mark_run_dir(run_dir: Path, kind: str = "train") -> None:
    """Write the marker that says lmforge made `run_dir` (atomically, before anything else)."""
    atomic_write_text(Path(run_dir) / MARKER, json.dumps({"lmforge": __version__, "kind": kind,
                                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def is_run_dir(run_dir: Path) -> bool:
    """Whether lmforge made `run_dir`: its marker, or (a run from before markers) a complete checkpoint."""
    run_dir = Path(run_dir)
    if (run_dir / MARKER).is_file():
        return True
    try:
        return has_checkpoint(run_dir) and latest_checkpoint(run_dir).is_dir()
    except RunDirError:  # `latest` points at an incomplete checkpoint
        return False


def check_resumable(run_dir: Path) -> None:
    """Refuse to resume (and so to clean) a folder lmforge did not make."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist" + (" (it is a file)" if run_dir.exists() else ""))
    if not is_run_dir(run_dir):
        raise RunDirError(f"{run_dir} is not a run directory made by lmforge (no {MARKER} marker); --resume continues "
                          "a folder `lmforge train` made — start a new run with `lmforge train CONFIG.yaml` instead")


def clean_restart(run_dir: Path) -> list[str]:
    """Empty a run that stopped before its first checkpoint so it can start again: only the entries lmforge
    writes go (`RUN_ENTRIES`); its config, marker and anything else in the folder stay. The names removed."""
    return remove_entries(Path(run_dir), RUN_ENTRIES)


def discard_run_dir(run_dir: Path) -> None:
    """Undo a run directory this process made and that failed before its first checkpoint: lmforge's entries,
    config and marker go, and the folder too once nothing else is in it."""
    if (Path(run_dir) / MARKER).is_file():
        discard_folder(Path(run_dir), (*RUN_ENTRIES, "config.yaml", MARKER))


def create_run_dir(config: RunConfig, kind: str = "train") -> Path:
    """Make the run directory, marked as lmforge's; refuse one that already holds files."""
    if config.train.output_dir:
        run_dir = Path(config.train.output_dir)
    else:
        run_dir = Path("runs") / f"{config.task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = run_dir.with_name(f"{run_dir.name.rsplit('~', 1)[0]}~{suffix}")
    check_writable_folder(run_dir, "train.output_dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"run directory {run_dir} already exists and is not empty; continue it with "
                          f"`lmforge train --resume {run_dir}` or set train.output_dir to a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_run_dir(run_dir, kind)
    return run_dir


def save_config(config: RunConfig, run_dir: Path) -> None:
    """Write the resolved config (every default filled in) as <run>/config.yaml."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(run_dir / "config.yaml", text)


def load_run_config(run_dir: Path, data_overrides: list[str] | None = None) -> RunConfig:
    """The config a run was started with; `data_overrides` (data.key=value) change how files given to it are read
    (columns, format, on_error) — its model and training stay as they were."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not an lmforge run directory (no config.yaml)")
    raw = load_yaml(run_dir / "config.yaml")
    other = next((o for o in data_overrides or [] if not o.partition("=")[0].strip().startswith("data.")), None)
    if other is not None:
        raise ConfigError(f"{other}: a run directory takes data.* overrides only (how the files you give it are "
                          "read: data.text_column, data.on_error, …); its model and training are fixed")
    return validate_config(RunConfig, apply_overrides(raw, data_overrides or []))


def model_dir(run_dir: Path) -> Path:
    """<run>/model, with a clear error when training never saved one."""
    path = Path(run_dir) / "model"
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise RunDirError(f"{run_dir} has no saved model yet (model/config.json or, for an adapter, "
                          "model/adapter_config.json); finish or resume its training first")
    return path
