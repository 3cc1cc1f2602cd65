"""`lmforge search`: hyper-parameter search with Optuna; every trial is an ordinary run directory.

The config is a normal run config plus a `search:` section naming dotted config keys and their ranges:

    search:
      sampler: tpe            # grid | random | tpe
      trials: 12
      space:
        train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}
        train.batch_size: {choices: [16, 32]}
        tuning.peft.r: {low: 4, high: 32, step: 4}

Trials report each epoch's validation metric, so the median pruner stops poor ones early. The study
lives in a storage: by default `study.db` (SQLite) in the search folder, so `lmforge search --resume DIR`
continues a killed search without repeating finished trials; `search.storage` names another (a
`postgresql://…` URL shared by searches on several machines, which then split `trials` between them);
`search.workers: N` runs N trials side by side in N processes. results.md/jsonl and best.json are read
back from the study after every trial, so they agree with each other and with what is printed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from lmforge.config.loader import RawConfig, apply_overrides, load_yaml
from lmforge.config.strict import STRICT
from lmforge.config.validate import validate_config
from lmforge.errors import ConfigError, RunDirError
from lmforge.evaluate.plots import plot_search_progress
from lmforge.files import STAGING_PREFIX, atomic_write_text, check_writable_folder, discard_folder
from lmforge.recipes.finetune import finetune
from lmforge.runs.run_dir import MARKER, mark_run_dir
from lmforge.runs.schema import RunConfig
from lmforge.tasks import build_task
from lmforge.train.loop import lower_is_better


class Dimension(BaseModel):
    """One searched key: a float/int range (`low`, `high`, `log`, `step`) or a list of `choices`."""

    model_config = STRICT

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
    model_config = STRICT

    sampler: Literal["grid", "random", "tpe"] = Field("tpe", description="grid tries every combination; random and "
                                                                         "tpe draw `trials` points.")
    trials: int | None = Field(None, gt=0, description="Trials to run (default: the grid's size, else 10).")
    space: dict[str, Dimension] = Field(..., min_length=1, description="Dotted config key -> its range or choices.")
    pruner: Literal["median", "none"] = Field("median", description="median: stop a trial whose epoch score falls "
                                                                   "below the median of earlier trials at that epoch.")
    seed: int = Field(0, description="Seed of the sampler.")
    storage: str | None = Field(None, description="Where the Optuna study lives: an SQLAlchemy URL such as "
                                                  "postgresql://user@host/db or sqlite:///path/study.db, shared by "
                                                  "every search that names it; default the search folder's study.db. "
                                                  "Searches sharing a storage each draw their own points (seeded by "
                                                  "seed + process id, so not repeatable).")
    study_name: str = Field("lmforge", description="The study's name in the storage (searches that share one use the "
                                                   "same name).")
    workers: int = Field(1, gt=0, description="Trials run side by side on this machine, each in its own process "
                                              "(torch threads split between them).")


class SearchConfig(RunConfig):
    search: SearchParams = Field(..., description="What to search over, and how.")


def sampler_for(params: SearchParams, seed_offset: int = 0):
    """(sampler, grid size or None); `seed_offset` gives each process sharing a study its own draws."""
    import optuna

    params = params.model_copy(update={"seed": params.seed + seed_offset})

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


SEARCH_FILE = "search.yaml"  # the search's raw config, for --resume
FINAL_STATES = ("COMPLETE", "PRUNED")  # trials that count towards search.trials (a killed one does not)


def search(raw: RawConfig | None, resume_dir: Path | None = None) -> Path:
    """Run the search (or continue the one in `resume_dir`); return its directory (trials, results.md,
    results.jsonl, best.json, search.png, study.db)."""
    if resume_dir is not None:
        raw = _saved_search(Path(resume_dir))
    if "search" not in raw.data:
        raise ConfigError("the config has no search: section; add one with the keys to search over (see "
                          "examples/search_sst2.yaml), or use `lmforge train` to train once")
    config = validate_config(SearchConfig, raw)
    params = config.search
    grid_size = sampler_for(params)[1]  # a grid that cannot be built is named before anything is written
    out = Path(resume_dir or config.train.output_dir or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume_dir is None:
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"search directory {out} already exists and is not empty; continue it with "
                              f"`lmforge search --resume {out}` or set train.output_dir to a new folder")
        first = {key: (d.choices[0] if d.choices is not None else d.low) for key, d in params.space.items()}
        trial_config(raw, first, out / "trial-000")  # every searched key must be a valid config key, before anything runs
        check_writable_folder(out, "train.output_dir")
        out.mkdir(parents=True, exist_ok=True)
        mark_run_dir(out, "search")
        try:
            study = open_study(config, out, resuming=False)
        except ConfigError:
            discard_search_dir(out)  # nothing ran: leave no folder behind
            raise
        atomic_write_text(out / SEARCH_FILE, yaml.safe_dump(raw.data, sort_keys=False, allow_unicode=True))
    else:
        study = open_study(config, out, resuming=True)
    target = min(params.trials or grid_size, grid_size) if grid_size else params.trials or 10
    done = sum(t.state.name in FINAL_STATES for t in study.trials)
    if resume_dir is not None:
        print(f"search: resuming {out}: {done} of {target} trials finished", file=sys.stderr)
    if params.workers == 1:
        run_trials(out, raw.data, target, os.getpid() if params.storage else 0)  # a shared study: other draws
    else:
        _run_workers(out, raw.data, target, params.workers)
    best = _report(out, study)
    if best is not None:
        print(f"search: best trial {best['trial']}: {best['metric']} {best[best['metric']]:.4f} with "
              f"{ {k: best[k] for k in params.space} }", file=sys.stderr)
    return out


def discard_search_dir(out: Path) -> None:
    """Remove what a search that never ran wrote into `out` (its study, config, marker); the folder goes once
    nothing else is in it."""
    discard_folder(out, ("study.db*", SEARCH_FILE, MARKER, STAGING_PREFIX + "*"))


def _saved_search(out: Path) -> RawConfig:
    if not (out / SEARCH_FILE).is_file():
        raise RunDirError(f"{out} is not a search folder (no {SEARCH_FILE}); give the folder `lmforge search` made")
    return load_yaml(out / SEARCH_FILE)


def storage_url(config: SearchConfig, out: Path) -> str:
    return config.search.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def study_of(config: SearchConfig, out: Path, seed_offset: int = 0):
    """The study in the search's storage (made when missing), sampled with seed + `seed_offset`."""
    import optuna

    metric = config.train.metric or build_task(config.task).default_metric
    direction = "minimize" if lower_is_better(metric) else "maximize"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if config.search.pruner == "median" \
        else optuna.pruners.NopPruner()
    try:
        for attempt in range(5):  # searches starting together race to create the tables; the loser tries again
            try:
                study = optuna.create_study(storage=storage_url(config, out), study_name=config.search.study_name,
                                            direction=direction, sampler=sampler_for(config.search, seed_offset)[0], pruner=pruner,
                                            load_if_exists=True)
                break
            except Exception as error:  # noqa: BLE001 — SQLAlchemy's OperationalError/IntegrityError
                if attempt == 4 or not type(error).__module__.startswith("sqlalchemy"):
                    raise
                time.sleep(0.5 + attempt)
    except (ImportError, ModuleNotFoundError) as error:
        raise ConfigError(f"search.storage {config.search.storage}: its database driver is not installed ({error}); "
                          "for postgresql:// pip install 'psycopg[binary]', or name the driver you have, e.g. "
                          "postgresql+psycopg2://") from None
    except Exception as error:  # noqa: BLE001 — SQLAlchemy's errors for an unreachable or wrong URL
        if type(error).__module__.startswith(("sqlalchemy", "optuna")):
            raise ConfigError(f"search.storage {storage_url(config, out)}: cannot open the study "
                              f"({str(error).splitlines()[0]})") from None
        raise
    study.set_user_attr("metric", metric)
    study.set_user_attr("space", list(config.search.space))
    return study


def open_study(config: SearchConfig, out: Path, resuming: bool):
    """The study; on resume of a folder's own study, trials a kill left running are marked failed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_of(config, out)
    if resuming and config.search.storage is None:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return study


def run_trials(out: Path, raw_data: dict, target: int, seed_offset: int = 0) -> None:
    """Run trials of the study until `target` have finished (in this process or any other sharing it)."""
    import optuna

    raw = RawConfig(data=raw_data)
    config = validate_config(SearchConfig, raw)
    study = study_of(config, out, seed_offset)
    params, metric = config.search, study.user_attrs["metric"]
    direction = study.direction.name.lower()

    def objective(trial) -> float:
        values = suggest_values(trial, params.space, params.sampler == "grid")
        run_dir = out / f"trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
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
        except Exception:
            state = "failed"
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            best = (min if direction == "minimize" else max)(history) if history else None
            print(f"search: trial {trial.number} {state}, best {metric} {best if best is None else round(best, 4)} "
                  f"with {values}", file=sys.stderr)
        if best is None:
            raise ConfigError(f"search needs a validation split to score trials on ({metric}); set data.validation "
                              "or data.validation_fraction")
        return best

    counted = tuple(getattr(optuna.trial.TrialState, name) for name in FINAL_STATES)
    running = optuna.trial.TrialState.RUNNING
    while True:
        trials = study.get_trials(deepcopy=False)
        if sum(t.state in counted or t.state == running for t in trials) >= target:
            return
        trial = study.ask()
        ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(t.state in counted or t.state == running for t in ahead) >= target:  # another search took the last one
            trial.set_user_attr("skipped", True)
            _tell(study, trial, state=optuna.trial.TrialState.FAIL)
            return
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
        except BaseException:
            _tell(study, trial, state=optuna.trial.TrialState.FAIL)
            raise
        else:
            _tell(study, trial, values=value)
        _report(out, study)


def _tell(study, trial, **result: Any) -> None:
    """study.tell; a grid sampler that has handed out its last point asks to stop the study, which only an
    optimize() loop can do (the trial is stored all the same), so that request is passed over."""
    try:
        study.tell(trial, **result)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def _worker(out: str, raw_data: dict, target: int, threads: int, index: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        run_trials(Path(out), raw_data, target, seed_offset=index)
    except Exception as error:  # noqa: BLE001 — a worker's error is printed; the others go on
        print(f"search: a worker stopped: {error}", file=sys.stderr)


def _run_workers(out: Path, raw_data: dict, target: int, workers: int) -> None:
    """`workers` processes share the study until `target` trials have finished."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(str(out), raw_data, target, threads, index))
                 for index in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()


def _report(out: Path, study) -> dict | None:
    """Write results.jsonl, results.md, best.json and search.png from the study's trials; the best row."""
    metric = study.user_attrs["metric"]
    keys = list(study.user_attrs.get("space", [])) or sorted({k for t in study.trials for k in t.params})
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "RUNNING" or trial.user_attrs.get("skipped"):
            continue
        values = trial.intermediate_values
        best = trial.value if trial.value is not None else (
            (min if study.direction.name == "MINIMIZE" else max)(values.values()) if values else None)
        rows.append({"trial": trial.number, "state": {"COMPLETE": "complete", "PRUNED": "pruned"}.get(
                         trial.state.name, "failed"), metric: best, "epochs": len(values),
                     "seconds": trial.user_attrs.get("seconds"), "run_dir": trial.user_attrs.get("run_dir"),
                     **trial.params})
    if rows:
        return _write_results(out, rows, metric, study.direction.name.lower(), keys)
    return None


def _write_results(out: Path, results: list[dict], metric: str, direction: str, keys: list[str]) -> dict | None:
    """results.jsonl, results.md (best first), best.json and the best-so-far plot, rewritten after every trial;
    the best row (with the metric's name under "metric"), if any trial was scored."""
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
    if not scored:
        return None
    atomic_write_text(out / "best.json", json.dumps(ranked[0], indent=2) + "\n")
    plot_search_progress([r[metric] for r in results], metric, minimise, out / "search.png")
    return ranked[0] | {"metric": metric}
