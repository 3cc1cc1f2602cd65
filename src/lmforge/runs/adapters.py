"""Several adapters side by side in one run: `lmforge adapters add|list`, and `--adapter NAME` at load time.

A PEFT run's own adapter lives in `<run>/model/`; adapters of other runs on the same base model and with
the same task and labels are copied into `<run>/adapters/<name>/`. Loading the run with an adapter name
reads the base once, attaches every adapter and switches the named one on.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from lmforge.errors import ConfigError, RunDirError
from lmforge.models.adapters import base_model_path, is_adapter_dir
from lmforge.models.labels import saved_labels
from lmforge.runs.run_dir import load_run_config, model_dir

ADAPTERS = "adapters"
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def own_adapter_name(run_dir: Path) -> str:
    peft = load_run_config(run_dir).tuning.peft
    return peft.adapter_name if peft is not None else "default"


def side_adapters(run_dir: Path) -> dict[str, Path]:
    """name -> folder of the adapters added beside the run's own one."""
    folder = Path(run_dir) / ADAPTERS
    return {p.name: p for p in sorted(folder.iterdir()) if is_adapter_dir(p)} if folder.is_dir() else {}


def adapter_names(run_dir: Path) -> list[str]:
    """The run's own adapter first, then the ones beside it."""
    return [own_adapter_name(run_dir), *side_adapters(run_dir)]


def check_adapter(run_dir: Path, name: str | None) -> None:
    """A one-line error unless `name` is an adapter of this PEFT run."""
    if name is None:
        return
    if not is_adapter_dir(model_dir(run_dir)):
        raise ConfigError(f"--adapter: {run_dir} is not a PEFT run (its model holds no adapter)")
    names = adapter_names(run_dir)
    if name not in names:
        raise ConfigError(f"--adapter {name}: {run_dir} has the adapters {', '.join(names)}")


def add_adapter(run_dir: Path, other_run: Path, name: str | None = None) -> str:
    """Copy `other_run`'s adapter beside `run_dir`'s; both must share base model, task and labels."""
    own, other = model_dir(run_dir), model_dir(other_run)
    for run, folder in ((run_dir, own), (other_run, other)):
        if not is_adapter_dir(folder):
            raise ConfigError(f"{run} is not a PEFT run (train it with tuning.peft.method=lora, …)")
    if base_model_path(own) != base_model_path(other):
        raise ConfigError(f"{other_run} adapts {base_model_path(other)}, but {run_dir} adapts {base_model_path(own)}")
    ours, theirs = load_run_config(run_dir).task, load_run_config(other_run).task
    if ours.name != theirs.name or saved_labels(own) != saved_labels(other):
        raise ConfigError(f"{other_run} ({theirs.name}, labels {saved_labels(other)}) does not share the task and labels "
                          f"of {run_dir} ({ours.name}, labels {saved_labels(own)})")
    name = name or Path(other_run).resolve().name
    if not NAME.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '_', '.' or '-'")
    if name in adapter_names(run_dir):
        raise RunDirError(f"{run_dir} already has an adapter named {name}; choose another --name")
    target = Path(run_dir) / ADAPTERS / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        for item in other.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return name
