"""`lmforge policy MODEL|RUN_DIR --data FILE --output DIR`: fit a learned decoding policy
(`decode: {strategy: auto, policy: DIR}`) from logged rewards.

Each row's prompt is decoded alone with every arm (`--arms greedy,beam4,topp0.9`), timed, and its output
rewarded against the row's reference (`--reward chrf`). The log (DIR/arms.jsonl) grows a row at a time: an
interrupted run continues with --resume, and --resume on a finished log refits at once (another
--cost-weight, --layer or --length). The policy — ridge regression from the prompt's features to
reward − cost_weight × seconds, per arm — is saved in DIR with report.json and arms.png: each arm's mean
reward, seconds and tokens/s, and the same for the arms the policy picks for each row when fitted without
that row (leave-one-out: what to expect on prompts it has not seen).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch
import yaml
from pydantic import ValidationError
from tqdm.auto import tqdm

from lmforge.config.safe_yaml import safe_load
from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.decode.generate import pad_id_of
from lmforge.decode.policy import PolicyFeatures
from lmforge.decode.policy_fit import best_ridge, fit_policy, held_out_picks, log_arms
from lmforge.errors import ConfigError, DataError, RunDirError
from lmforge.evaluate.plots import plot_reward_vs_seconds
from lmforge.files import atomic_write_text
from lmforge.methods.strategy_network.task import StrategyNetworkTask
from lmforge.metrics.rewards import RewardSpec, build_reward
from lmforge.recipes.generate import Generator, compare_params, open_generator

LOG_FILE = "arms.jsonl"
SETTINGS_FILE = "settings.json"


def parse_rewards(text: str) -> list[RewardSpec]:
    """`--reward`: names with optional weights (`chrf`, `chrf:0.7,bleu:0.3`) or a YAML list of reward specs
    (`[{name: regex, pattern: '...'}]`)."""
    try:
        if text.lstrip().startswith(("[", "{")):
            specs = safe_load(text, "--reward")
            return [RewardSpec(**spec) for spec in (specs if isinstance(specs, list) else [specs])]
        specs = []
        for item in text.split(","):
            name, _, weight = item.strip().partition(":")
            specs.append(RewardSpec(name=name, weight=float(weight)) if weight else RewardSpec(name=name))
        return specs
    except (ValidationError, ValueError, TypeError, yaml.YAMLError) as error:
        message = error.errors()[0]["msg"] if isinstance(error, ValidationError) else str(error)
        raise ConfigError(f"--reward {text!r}: {message.replace('Value error, ', '')} "
                          "(e.g. --reward chrf or --reward chrf:0.7,bleu:0.3)") from None


def labelled_prompts(generator: Generator, data: str, limit: int | None = None) -> tuple[list[list[int]], list[list[str]]]:
    """(prompt ids, references) of the labelled rows of `data`, formatted the way the generator prompts."""
    examples = generator.task.read_file(data, DataParams(), RowErrors.without_config(), labelled=True)[:limit]
    if len(examples) < 2:
        raise DataError(f"{data}: a policy needs at least 2 rows with a reference, found {len(examples)}")
    return generator.example_prompt_ids(examples), [e.references or [e.target] for e in examples]


def _log(output: Path, resume: bool, settings: dict) -> list[dict]:
    """The rows logged so far in `output` (a new folder unless `resume`), after checking it logged the same
    decodings."""
    if not resume:
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise RunDirError(f"{output} exists; add --resume to continue its log (or refit), or choose another --output")
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / SETTINGS_FILE, json.dumps(settings, indent=2))
        return []
    if not (output / SETTINGS_FILE).is_file():
        raise RunDirError(f"--resume: {output} holds no policy log ({SETTINGS_FILE}); drop --resume to start one")
    saved = json.loads((output / SETTINGS_FILE).read_text(encoding="utf-8"))
    changed = [key for key in settings if saved.get(key) != settings[key]]
    if changed:
        raise ConfigError(f"--resume: {output} logged with other {', '.join(changed)} "
                          f"({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}); use those or another --output")
    lines = (output / LOG_FILE).read_text(encoding="utf-8").splitlines() if (output / LOG_FILE).is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def _summary(rows: list[dict], choices: list[str]) -> dict:
    """Mean reward, mean seconds and output tokens per second of decoding row i with arm choices[i]."""
    rewards = [row["reward"][arm] for row, arm in zip(rows, choices, strict=True)]
    seconds = [row["seconds"][arm] for row, arm in zip(rows, choices, strict=True)]
    tokens = [row["tokens"][arm] for row, arm in zip(rows, choices, strict=True)]
    return {"mean_reward": round(statistics.mean(rewards), 4), "mean_seconds": round(statistics.mean(seconds), 4),
            "tokens_per_second": round(sum(tokens) / max(sum(seconds), 1e-9), 1)}


def fit_policy_run(target: str, data: str, output: str | Path, arms: str = "greedy,beam4", reward: str = "chrf",
                   cost_weight: float = 0.0, layer: int = -1, length: bool = False, max_new_tokens: int | None = None,
                   limit: int | None = None, resume: bool = False, seed: int = 0, progress: bool = True,
                   device: str | None = None) -> dict:
    """Log every arm on every row of `data` (continuing the log with `resume`), fit and save the policy in
    `output`; the report (also report.json, arms.png)."""
    output = Path(output)
    arm_params = {spec.strip(): compare_params(spec, seed) for spec in arms.split(",") if spec.strip()}
    if len(arm_params) < 2:
        raise ConfigError(f"--arms {arms!r}: a policy chooses between at least 2 arms, e.g. --arms greedy,beam4")
    reward_fn = build_reward(parse_rewards(reward))
    generator = open_generator(target, max_new_tokens=max_new_tokens, device=device)
    if isinstance(generator.task, StrategyNetworkTask):
        raise ConfigError(f"{target} is a strategy network; fit a policy on a single model or generation run")
    prompts, references = labelled_prompts(generator, data, limit)
    settings = {"model": str(target), "data": str(Path(data).resolve()), "arms": list(arm_params), "reward": reward,
                "max_new_tokens": generator.max_new_tokens, "rows": len(prompts), "seed": seed}
    logged = _log(output, resume, settings)
    with open(output / LOG_FILE, "a", encoding="utf-8") as log_file:
        for i in tqdm(range(len(logged), len(prompts)), desc="logging arms", disable=not progress, leave=False,
                      initial=len(logged), total=len(prompts)):
            found = log_arms(generator.model, generator.tokenizer, [prompts[i]], [references[i]], arm_params, reward_fn,
                             generator.max_new_tokens, generator.stop_strings)
            row = {"row": i, **{key: dict(zip(found.arms, values, strict=True)) for key, values in (
                ("reward", found.rewards[0].tolist()), ("seconds", found.seconds[0].tolist()),
                ("tokens", found.tokens[0].tolist()), ("text", found.texts[0]))}}
            log_file.write(json.dumps(row, ensure_ascii=False) + "\n")
            log_file.flush()
            logged.append(row)

    names = list(arm_params)
    rewards = torch.tensor([[row["reward"][a] for a in names] for row in logged])
    seconds = torch.tensor([[row["seconds"][a] for a in names] for row in logged])
    utilities = rewards - cost_weight * seconds
    reader = PolicyFeatures(layer, length)
    features = reader.read(generator.model, prompts, pad_id_of(generator.tokenizer))
    ridge = best_ridge(features, utilities)
    arm_fields = {name: params.model_dump(exclude_defaults=True) for name, params in arm_params.items()}
    fit_policy(features, utilities, arm_fields, cost_weight, ridge, reader).save(output)

    picks = [names[i] for i in held_out_picks(features, utilities, ridge).tolist()]
    oracle = [names[i] for i in utilities.argmax(dim=1).tolist()]
    fixed = {name: _summary(logged, [name] * len(logged)) for name in names}
    best_fixed = max(fixed, key=lambda name: fixed[name]["mean_reward"])
    report = {"rows": len(logged), "arms": fixed, "best_fixed_arm": best_fixed, "cost_weight": cost_weight,
              "ridge": ridge, "features": {"layer": layer, "length": length},
              "policy_leave_one_out": _summary(logged, picks) | {"usage": {n: picks.count(n) for n in names}},
              "oracle": _summary(logged, oracle)}
    atomic_write_text(output / "report.json", json.dumps(report, indent=2))
    points = {f"{name} (fixed)": (s["mean_seconds"], s["mean_reward"]) for name, s in fixed.items()}
    points["auto (leave-one-out)"] = (report["policy_leave_one_out"]["mean_seconds"],
                                      report["policy_leave_one_out"]["mean_reward"])
    points["oracle per row"] = (report["oracle"]["mean_seconds"], report["oracle"]["mean_reward"])
    plot_reward_vs_seconds(points, output / "arms.png", f"{len(logged)} rows, cost weight {cost_weight:g}")
    return report


def report_table(report: dict) -> str:
    """The report as a markdown table: each fixed arm, the policy (leave-one-out) and the per-row oracle."""
    lines = ["| decoding | mean reward | mean s / row | tokens / s | arms chosen |", "|---|---|---|---|---|"]
    for name, s in report["arms"].items():
        lines.append(f"| {name} (fixed) | {s['mean_reward']:.4f} | {s['mean_seconds']:.3f} | {s['tokens_per_second']} | – |")
    auto = report["policy_leave_one_out"]
    usage = ", ".join(f"{name} {count}" for name, count in auto["usage"].items())
    lines.append(f"| auto (leave-one-out) | {auto['mean_reward']:.4f} | {auto['mean_seconds']:.3f} | "
                 f"{auto['tokens_per_second']} | {usage} |")
    oracle = report["oracle"]
    lines.append(f"| oracle per row | {oracle['mean_reward']:.4f} | {oracle['mean_seconds']:.3f} | "
                 f"{oracle['tokens_per_second']} | – |")
    return "\n".join(lines)
