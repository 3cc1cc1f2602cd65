"""`lmforge search`: hyper-parameter search with Optuna; every trial is an ordinary run directory.

The config is a normal run config plus a `search:` section naming dotted config keys and their ranges:

    search:
      sampler: tpe            # grid | random | tpe
      trials: 12
      space:
        train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}
        train.batch_size: {choices: [16, 32]}
        tuning.peft.r: {low: 4, high: 32, step: 4}

Trials report each epoch's validation metric, so the median pruner stops poor ones early.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmforge.config.loader import RawConfig, apply_overrides
from lmforge.config.validate import validate_config
from lmforge.errors import ConfigError, RunDirError
from lmforge.evaluate.plots import plot_search_progress
from lmforge.files import atomic_write_text
from lmforge.recipes.finetune import finetune
from lmforge.recipes.schema import RunConfig
from lmforge.tasks import build_task
from lmforge.train.loop import lower_is_better


class Dimension(BaseModel):
    """One searched key: a float/int range (`low`, `high`, `log`, `step`) or a list of `choices`."""

    model_config = ConfigDict(extra="forbid")

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0, description="Grid step for an int/float range.")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> Dimension:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either {low, high} (with optional log/step) or {choices: [...]}")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError("low must be below high")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(float(v).is_integer() for v in (self.low, self.high, self.step or 1))

    def grid(self) -> list[Any]:
        """The values a grid search tries."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ValueError("a grid over a range needs `step` (or give `choices`)")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.is_int else values


class SearchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampler: Literal["grid", "random", "tpe"] = Field("tpe", description="grid tries every combination; random and "
                                                                         "tpe draw `trials` points.")
    trials: int | None = Field(None, gt=0, description="Trials to run (default: the grid's size, else 10).")
    space: dict[str, Dimension] = Field(..., min_length=1, description="Dotted config key -> its range or choices.")
    pruner: Literal["median", "none"] = Field("median", description="median: stop a trial whose epoch score falls "
                                                                   "below the median of earlier trials at that epoch.")
    seed: int = Field(0, description="Seed of the sampler.")


class SearchConfig(RunConfig):
    search: SearchParams = Field(..., description="What to search over, and how.")


def sampler_for(params: SearchParams):
    import optuna

    if params.sampler == "grid":
        try:
            grid = {key: dimension.grid() for key, dimension in params.space.items()}
        except ValueError as exc:
            raise ConfigError(f"search.space: {exc}") from None
        return optuna.samplers.GridSampler(grid, seed=params.seed), math.prod(len(v) for v in grid.values())
    if params.sampler == "random":
        return optuna.samplers.RandomSampler(seed=params.seed), None
    return optuna.samplers.TPESampler(seed=params.seed), None


def suggest_values(trial, space: dict[str, Dimension], grid: bool) -> dict[str, Any]:
    """One point of the space, drawn by the trial's sampler."""
    values = {}
    for key, dimension in space.items():
        if dimension.choices is not None:
            values[key] = trial.suggest_categorical(key, dimension.choices)
        elif grid:
            values[key] = trial.suggest_categorical(key, dimension.grid())
        elif dimension.is_int:
            values[key] = trial.suggest_int(key, int(dimension.low), int(dimension.high), step=int(dimension.step or 1),
                                            log=dimension.log)
        else:
            values[key] = trial.suggest_float(key, dimension.low, dimension.high, step=dimension.step, log=dimension.log)
    return values


def trial_config(raw: RawConfig, values: dict[str, Any], output_dir: Path) -> RunConfig:
    """The run config of one trial: the search config without `search:`, with the trial's values set."""
    base = RawConfig(data={k: v for k, v in raw.data.items() if k != "search"}, sources=raw.sources)
    overrides = [f"{key}={json.dumps(value)}" for key, value in values.items()] + [f"train.output_dir={output_dir}"]
    return validate_config(RunConfig, apply_overrides(base, overrides))


def search(raw: RawConfig) -> Path:
    """Run the search; return its directory (trials, results.md, results.jsonl, best.json, search.png)."""
    import optuna

    if "search" not in raw.data:
        raise ConfigError("the config has no search: section; add one with the keys to search over (see "
                          "examples/search_sst2.yaml), or use `lmforge train` to train once")
    config = validate_config(SearchConfig, raw)
    params = config.search
    sampler, grid_size = sampler_for(params)
    trials = params.trials or grid_size or 10
    metric = config.train.metric or build_task(config.task).default_metric
    direction = "minimize" if lower_is_better(metric) else "maximize"
    out = Path(config.train.output_dir or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"search directory {out} already exists and is not empty; set train.output_dir to a new folder")
    first = {key: (d.choices[0] if d.choices is not None else d.low) for key, d in params.space.items()}
    trial_config(raw, first, out / "trial-000")  # every searched key must be a valid config key, before anything runs
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if params.pruner == "median" \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    results: list[dict] = []

    def objective(trial) -> float:
        values = suggest_values(trial, params.space, params.sampler == "grid")
        run_dir = out / f"trial-{trial.number:03d}"
        history: list[float] = []

        def on_validation(epoch: int, value: float) -> None:
            history.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        started = time.perf_counter()
        state = "complete"
        try:
            finetune(trial_config(raw, values, run_dir), on_validation=on_validation)
        except optuna.TrialPruned:
            state = "pruned"
            raise
        finally:
            best = (min if direction == "minimize" else max)(history) if history else None
            results.append({"trial": trial.number, "state": state, metric: best, "epochs": len(history),
                            "seconds": round(time.perf_counter() - started, 1), "run_dir": str(run_dir), **values})
            _write_results(out, results, metric, direction, list(params.space))
            print(f"search: trial {trial.number} {state}, best {metric} {best if best is None else round(best, 4)} "
                  f"with {values}", file=sys.stderr)
        if best is None:
            raise ConfigError(f"search needs a validation split to score trials on ({metric}); set data.validation "
                              "or data.validation_fraction")
        return best

    study.optimize(objective, n_trials=trials, catch=())
    return out


def _write_results(out: Path, results: list[dict], metric: str, direction: str, keys: list[str]) -> None:
    """results.jsonl, results.md (best first), best.json and the best-so-far plot, rewritten after every trial."""
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in results))
    scored = [r for r in results if r[metric] is not None]
    minimise = direction == "minimize"
    ranked = sorted(scored, key=lambda r: r[metric], reverse=not minimise) + [r for r in results if r[metric] is None]
    lines = [f"# Hyper-parameter search ({len(results)} trials, {direction} validation {metric})", "",
             f"| trial | state | {metric} | epochs | seconds | " + " | ".join(keys) + " |",
             "|" + "---|" * (5 + len(keys))]
    for r in ranked:
        value = "" if r[metric] is None else f"{r[metric]:.4f}"
        lines.append(f"| {r['trial']} | {r['state']} | {value} | {r['epochs']} | {r['seconds']} | "
                     + " | ".join(str(r[k]) for k in keys) + " |")
    lines += ["", "![best so far](search.png)"]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    if scored:
        atomic_write_text(out / "best.json", json.dumps(ranked[0], indent=2) + "\n")
        plot_search_progress([r[metric] for r in results], metric, minimise, out / "search.png")
