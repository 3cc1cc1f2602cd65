"""Run directories: created fresh (never overwritten), reopened for resume, evaluate and predict."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from lmforge.config.loader import apply_overrides, load_yaml
from lmforge.config.validate import validate_config
from lmforge.errors import ConfigError, RunDirError
from lmforge.files import atomic_write_text
from lmforge.runs.schema import RunConfig


def create_run_dir(config: RunConfig) -> Path:
    """Make the run directory; refuse one that already holds files."""
    if config.train.output_dir:
        run_dir = Path(config.train.output_dir)
    else:
        run_dir = Path("runs") / f"{config.task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = run_dir.with_name(f"{run_dir.name.rsplit('~', 1)[0]}~{suffix}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"run directory {run_dir} already exists and is not empty; continue it with "
                          f"`lmforge train --resume {run_dir}` or set train.output_dir to a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
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
