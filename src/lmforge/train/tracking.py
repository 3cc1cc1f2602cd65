"""Experiment tracking beside TensorBoard, through accelerate's trackers: MLflow (a local SQLite store
beside the run directories by default, or `train.tracking_uri` for a server) and Weights & Biases.

Off unless `train.tracking` names one. The tracker's run id is kept in the run directory, so `--resume`
goes on logging into the same MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.files import atomic_write_text

RUN_IDS = "tracking.json"  # tracker -> its run id, in the run directory


def default_tracking_uri(run_dir: Path) -> str:
    """An SQLite MLflow store shared by the runs beside `run_dir` (`mlflow ui --backend-store-uri` reads it)."""
    return f"sqlite:///{(Path(run_dir).resolve().parent / 'mlruns.db')}"


def check_trackers(names: list[str]) -> None:
    """Refuse trackers whose package is missing (before the run directory is made)."""
    import importlib.util

    for name in names:
        if importlib.util.find_spec(name) is None:
            package = {"mlflow": "mlflow-skinny (or mlflow)", "wandb": "wandb"}[name]
            raise ConfigError(f"train.tracking {name}: the {name} package is not installed; pip install {package}, "
                              "or drop it from train.tracking")


class Trackers:
    """The run's trackers: `log(values, step)` each, `close()` at the end."""

    def __init__(self, names: list[str], run_dir: Path, config: dict[str, Any], tracking_uri: str | None,
                 experiment: str) -> None:
        self.trackers: list[Any] = []
        ids_path = Path(run_dir) / RUN_IDS
        ids = json.loads(ids_path.read_text(encoding="utf-8")) if ids_path.is_file() else {}
        for name in names:
            if name == "mlflow":
                self.trackers.append(self._mlflow(run_dir, config, tracking_uri, experiment, ids))
            elif name == "wandb":
                self.trackers.append(self._wandb(run_dir, config, experiment, ids))
        atomic_write_text(ids_path, json.dumps(ids, indent=1) + "\n")

    @staticmethod
    def _mlflow(run_dir: Path, config: dict, tracking_uri: str | None, experiment: str, ids: dict) -> Any:
        import mlflow
        from accelerate.tracking import MLflowTracker

        mlflow.set_tracking_uri(tracking_uri or default_tracking_uri(run_dir))
        tracker = MLflowTracker(experiment, run_id=ids.get("mlflow"), run_name=Path(run_dir).name)
        tracker.start()
        if "mlflow" not in ids:
            tracker.store_init_configuration(_flat(config))
        ids["mlflow"] = tracker.active_run.info.run_id
        return tracker

    @staticmethod
    def _wandb(run_dir: Path, config: dict, experiment: str, ids: dict) -> Any:
        from accelerate.tracking import WandBTracker

        os.environ.setdefault("WANDB_DIR", str(run_dir))
        tracker = WandBTracker(experiment, name=Path(run_dir).name, id=ids.get("wandb"), resume="allow")
        tracker.start()
        if "wandb" not in ids:
            tracker.store_init_configuration(config)
        ids["wandb"] = tracker.run.id
        return tracker

    def log(self, values: dict[str, Any], step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for tracker in self.trackers:
            tracker.log(numbers, step=step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (train.lr), the form MLflow parameters take."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flat(value, name + ".")
        else:
            flat[name] = value
    return flat
