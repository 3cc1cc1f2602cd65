"""Rewards for sequence-level training: small functions chosen by name, combined with weights.

A reward function maps (outputs, references) to one float per output; `references[i]` lists the
acceptable texts for output i (empty where there are none). REWARDS is the only list of names;
`python` loads a user's own function from `file.py:name` or `package.module:name`; `classifier` and
`reward_model` score outputs with a trained run (a reward model also reads each output's prompt).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sacrebleu
from pydantic import BaseModel, Field, field_validator, model_validator

from lmforge.config.strict import STRICT
from lmforge.errors import ConfigError
from lmforge.metrics.squad import exact_match, token_f1

RewardFn = Callable[[list[str], list[list[str]]], list[float]]
#: a reward that also reads the prompts: (outputs, references, prompts) -> floats
PromptedRewardFn = Callable[[list[str], list[list[str]], list[Any]], list[float]]
#: a trained run directory -> the run answering rows (`.task`: its task name, `.predict(rows)` -> predictions)
RunLoader = Callable[[str], Any]
#: rewards scored by a trained run -> the tasks that run may be
RUN_TASKS = {"classifier": ("text-classification", "prompt-classification"), "reward_model": ("reward-modeling",)}
#: rewards that read each output's prompt too
PROMPTED = ("reward_model",)


class RewardSpec(BaseModel):
    """One reward of the mix: its name, weight and the settings that name needs."""

    model_config = STRICT

    name: str = Field(..., description="One of: " + ", ".join(
        ["bleu", "chrf", "exact_match", "token_f1", "regex", "json", "length", "classifier", "reward_model", "python"]))
    weight: float = Field(1.0, description="Weight of this reward in the sum.")
    pattern: str | None = Field(None, description="regex: the whole output must match this.")
    target: int | None = Field(None, gt=0, description="length: the wanted length in words.")
    run: str | None = Field(None, description="classifier: a trained classification run directory; reward_model: a "
                                              "trained reward-modeling run directory.")
    label: str | None = Field(None, description="classifier: the label whose probability is the reward.")
    function: str | None = Field(None, description="python: file.py:name or package.module:name.")
    allow_code: bool = Field(False, description="python: run the named code (off by default, like trust_remote_code: "
                                                "a config alone never runs a file).")

    @model_validator(mode="after")
    def _code_allowed(self) -> RewardSpec:
        if self.name == "python" and not self.allow_code:
            raise ValueError(f"reward python runs the code in {self.function or 'its function'}: add allow_code: true "
                             "to this reward if you trust that file")
        if self.allow_code and self.name != "python":
            raise ValueError(f"allow_code applies to the python reward, not {self.name!r}")
        return self

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in REWARDS:
            raise ValueError(f"reward {value!r} is unknown; choose one of: {', '.join(REWARDS)}")
        return value


def _need(spec: RewardSpec, field: str) -> Any:
    value = getattr(spec, field)
    if value is None:
        raise ConfigError(f"reward {spec.name}: set {field}")
    return value


def _bleu(spec: RewardSpec) -> RewardFn:
    def reward(outputs: list[str], references: list[list[str]]) -> list[float]:
        return [sacrebleu.sentence_bleu(o, refs).score / 100 if refs else 0.0 for o, refs in zip(outputs, references, strict=True)]
    return reward


def _chrf(spec: RewardSpec) -> RewardFn:
    def reward(outputs: list[str], references: list[list[str]]) -> list[float]:
        return [sacrebleu.sentence_chrf(o, refs).score / 100 if refs else 0.0 for o, refs in zip(outputs, references, strict=True)]
    return reward


def _best_of(score: Callable[[str, str], float]) -> Callable[[RewardSpec], RewardFn]:
    def build(spec: RewardSpec) -> RewardFn:
        def reward(outputs: list[str], references: list[list[str]]) -> list[float]:
            return [max((score(o, r) for r in refs), default=0.0) for o, refs in zip(outputs, references, strict=True)]
        return reward
    return build


def _regex(spec: RewardSpec) -> RewardFn:
    try:
        pattern = re.compile(_need(spec, "pattern"), re.DOTALL)
    except re.error as error:
        raise ConfigError(f"reward regex: pattern {spec.pattern!r} is not a valid regex ({error})") from None
    return lambda outputs, references: [float(pattern.fullmatch(o.strip()) is not None) for o in outputs]


def _json(spec: RewardSpec) -> RewardFn:
    def valid(text: str) -> float:
        try:
            json.loads(text)
        except ValueError:
            return 0.0
        return 1.0
    return lambda outputs, references: [valid(o.strip()) if o.strip() else 0.0 for o in outputs]


def _length(spec: RewardSpec) -> RewardFn:
    target = _need(spec, "target")
    return lambda outputs, references: [-abs(len(o.split()) - target) / target for o in outputs]


def reads_prompts(specs: list[RewardSpec]) -> bool:
    """Whether any of `specs` reads the prompts (the caller then passes them)."""
    return any(spec.name in PROMPTED for spec in specs)


def check_reward_runs(specs: list[RewardSpec], task_of_run: Callable[[str], str]) -> None:
    """Refuse, before anything loads, a `classifier` or `reward_model` reward whose run is missing or of another
    task (`task_of_run(run)`: the run's task name; it raises for a folder that is no run)."""
    for spec in specs:
        if spec.name in RUN_TASKS:
            run = _need(spec, "run")
            task = task_of_run(run)
            if task not in RUN_TASKS[spec.name]:
                wanted = " or ".join(RUN_TASKS[spec.name])
                raise ConfigError(f"reward {spec.name}: {run} is a {task} run, not a {wanted} run; train one with "
                                  f"task: {RUN_TASKS[spec.name][0]}")


def _served_run(spec: RewardSpec, load_run: RunLoader | None) -> Any:
    if load_run is None:
        raise ConfigError(f"reward {spec.name}: no way to load a run here; `lmforge train` provides one")
    served = load_run(_need(spec, "run"))
    check_reward_runs([spec], lambda run: served.task)
    return served


def _classifier(spec: RewardSpec, load_run: RunLoader | None) -> RewardFn:
    predict = _served_run(spec, load_run).predict
    label = _need(spec, "label")

    def reward(outputs: list[str], references: list[list[str]]) -> list[float]:
        texts = [o if o.strip() else "." for o in outputs]  # an empty output still gets a probability
        predictions = predict(texts)
        if label not in predictions[0]["probabilities"]:
            raise ConfigError(f"reward classifier: label {label!r} is not one of {list(predictions[0]['probabilities'])}")
        return [p["probabilities"][label] for p in predictions]
    return reward


def _reward_model(spec: RewardSpec, load_run: RunLoader | None) -> PromptedRewardFn:
    predict = _served_run(spec, load_run).predict

    def reward(outputs: list[str], references: list[list[str]], prompts: list[Any]) -> list[float]:
        rows = [{"prompt": p, "completion": o if o.strip() else "."} for p, o in zip(prompts, outputs, strict=True)]
        return [p["reward"] for p in predict(rows)]
    return reward


def _python(spec: RewardSpec) -> RewardFn:
    reference = _need(spec, "function")
    where, _, name = reference.rpartition(":")
    if not where or not name:
        raise ConfigError(f"reward python: function {reference!r} should be file.py:name or package.module:name")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"reward python: {path}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise ConfigError(f"reward python: cannot import {where} ({error})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"reward python: {where} has no function {name}")
    return function


#: reward name -> builder(spec) -> reward function
REWARDS: dict[str, Callable[[RewardSpec], RewardFn]] = {
    "bleu": _bleu, "chrf": _chrf, "exact_match": _best_of(exact_match), "token_f1": _best_of(token_f1),
    "regex": _regex, "json": _json, "length": _length, "classifier": _classifier, "reward_model": _reward_model,
    "python": _python,
}  # the builders of RUN_TASKS' rewards also take the run loader (see build_reward)


def build_reward(specs: list[RewardSpec], load_run: RunLoader | None = None) -> PromptedRewardFn:
    """The weighted sum of `specs`' rewards, called as reward(outputs, references, prompts=None); `load_run` opens
    the runs that `classifier` and `reward_model` rewards name (a reward model needs the prompts)."""
    if not specs:
        raise ConfigError("rewards: give at least one, e.g. [{name: chrf}]")
    parts = [(spec.weight, spec.name in PROMPTED,
              REWARDS[spec.name](spec, load_run) if spec.name in RUN_TASKS else REWARDS[spec.name](spec))
             for spec in specs]

    def reward(outputs: list[str], references: list[list[str]], prompts: list[Any] | None = None) -> list[float]:
        totals = [0.0] * len(outputs)
        for weight, prompted, function in parts:
            if prompted and prompts is None:
                raise ConfigError("reward reward_model scores a prompt with its output; this caller gives no prompts")
            values = [float(v) for v in (function(outputs, references, prompts) if prompted
                                         else function(outputs, references))]
            if len(values) != len(outputs):
                raise ValueError(f"a reward returned {len(values)} values for {len(outputs)} outputs")
            totals = [t + weight * v for t, v in zip(totals, values, strict=True)]
        return totals
    return reward
