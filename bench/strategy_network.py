"""The multi-task strategy network vs one LoRA model per task, on three real tasks in text-to-text form.

Tasks (SmolLM2-135M-Instruct, LoRA r 8 on every linear layer, chat template):
  sst2        SST-2 sentiment ("positive"/"negative"), ../shared/data/sst2
  topic       chatterbot-corpus topic of an utterance (19 topics, `dataset:chatterbot-topics`)
  translate   Multi30k English → French, ../shared/data/multi30k

The single-task baselines are `lmforge train` runs of the generation task on each task's rows; the strategy
network is one run on all rows (`tuning.strategy_network`: one LoRA expert per task, a router over the prompt's
hidden state, temperature-based task sampling). Both are scored on the same validation rows: exact match for the
two classification tasks, sacreBLEU for translation. The router never sees a task id at inference.

    python bench/strategy_network.py --train 1500 --validation 150 --output /tmp/runs/strategy
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
TASKS = ("sst2", "topic", "translate")
METRIC = {"sst2": "exact_match", "topic": "exact_match", "translate": "bleu"}
SYSTEM = "You are a helpful assistant."


def _sst2(split: str, count: int, rng: random.Random) -> list[dict]:
    with open(SHARED / "sst2" / f"{split}.tsv", encoding="utf-8") as handle:
        rows = [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    rng.shuffle(rows)
    return [{"task": "sst2", "source": f"Review: {text}\nIs this review positive or negative?",
             "target": "positive" if label == "1" else "negative"} for label, text in rows[:count]]


def _topics(train: int, validation: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    from lmforge.data.packaged import chatterbot_topics

    rows = [{"task": "topic", "source": f"Which chatbot topic is this line from? \"{r['text']}\"", "target": r["label"]}
            for r in chatterbot_topics()]
    rng.shuffle(rows)
    return rows[validation:validation + train], rows[:validation]


def _multi30k(split: str, count: int) -> list[dict]:
    def lines(language: str) -> list[str]:
        with gzip.open(SHARED / "multi30k" / f"{split}.{language}.gz", "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle]
    return [{"task": "translate", "source": f"Translate into French: {en}", "target": fr}
            for en, fr in list(zip(lines("en"), lines("fr"), strict=True))[:count]]


def prepare(folder: Path, train: int, validation: int, seed: int) -> dict[str, tuple[Path, Path]]:
    """Per task (and `all`): (train.jsonl, validation.jsonl) in `folder`."""
    rng = random.Random(seed)
    topic_train, topic_validation = _topics(train, validation, rng)
    splits = {"sst2": (_sst2("train", train, rng), _sst2("dev", validation, rng)),
              "topic": (topic_train, topic_validation),
              "translate": (_multi30k("train", train), _multi30k("val", validation))}
    splits["all"] = tuple(sum((splits[t][i] for t in TASKS), []) for i in (0, 1))
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (train_rows, validation_rows) in splits.items():
        files[name] = (folder / f"{name}_train.jsonl", folder / f"{name}_validation.jsonl")
        for path, rows in zip(files[name], (train_rows, validation_rows), strict=True):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return files


def config(train: Path, validation: Path, epochs: int, lr: float, strategy: bool) -> dict:
    tuning = ({"strategy_network": {"r": 8, "alpha": 16, "temperature": 2.0}} if strategy
              else {"peft": {"method": "lora", "r": 8, "alpha": 16}})
    return {"task": {"name": "generation", "system": SYSTEM, "max_new_tokens": 48, "max_target_length": 48},
            "model": "smollm2-135m-instruct",
            "data": {"train": str(train), "validation": str(validation), "max_length": 96},
            "train": {"epochs": epochs, "batch_size": 16, "eval_batch_size": 32, "lr": lr, "warmup_ratio": 0.03,
                      "weight_decay": 0.0, "precision": "bf16"},
            "tuning": tuning}


def train(name: str, settings: dict, output: Path) -> tuple[dict, float]:
    """Run `lmforge train`; (its report's metrics, seconds)."""
    path = output / f"{name}.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge.cli", "train", str(path), f"train.output_dir={output / name}"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return json.loads((output / name / "report.json").read_text(encoding="utf-8")), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1500, help="training rows per task")
    parser.add_argument("--validation", type=int, default=150, help="validation rows per task")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", choices=("single", "joint"), help="run only the single-task baselines or the joint run")
    parser.add_argument("--output", type=Path, required=True, help="folder for the data, the runs and results.json")
    args = parser.parse_args()
    if not (SHARED / "sst2" / "train.tsv").is_file() or not (SHARED / "multi30k" / "val.en.gz").is_file():
        sys.exit(f"this benchmark needs SST-2 and Multi30k under {SHARED}")
    files = prepare(args.output / "data", args.train, args.validation, args.seed)
    saved = args.output / "results.json"
    results = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}  # --only runs add up
    names = [] if args.only == "joint" else list(TASKS)
    names += [] if args.only == "single" else ["all"]
    for name in names:
        results[name] = train(name, config(*files[name], args.epochs, args.lr, name == "all"), args.output)
        print(f"{name}: {results[name][1]:.0f} s", file=sys.stderr)
    saved.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print_table(results)


def print_table(results: dict) -> None:
    print("| task | metric | single-task LoRA | strategy network | difference |")
    print("|---|---|---|---|---|")
    joint = results.get("all", ({}, 0))[0]
    for task in TASKS:
        metric = METRIC[task]
        single = results[task][0].get(metric) if task in results else None
        shared = joint.get("tasks", {}).get(task, {}).get(metric)
        difference = f"{shared - single:+.2f}" if single is not None and shared is not None else "–"
        show = lambda v: f"{v:.2f}" if v is not None else "–"  # noqa: E731
        print(f"| {task} | {metric} | {show(single)} | {show(shared)} | {difference} |")
    if "router" in joint:
        experts = sorted({e for row in joint["router"].values() for e in row})
        print("\n| task \\ expert | " + " | ".join(experts) + " |")
        print("|---|" + "---|" * len(experts))
        for task, row in joint["router"].items():
            print(f"| {task} | " + " | ".join(str(row.get(e, 0)) for e in experts) + " |")
    seconds = {name: round(s) for name, (_, s) in results.items()}
    print(f"\nwall seconds per run: {seconds}")


if __name__ == "__main__":
    main()
