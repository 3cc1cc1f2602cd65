"""Many adapters on one base: `lmforge serve smollm2-135m-instruct --adapter a0=RUN ... --adapter a3=RUN` at 16 clients,
requests cycling over the 4 adapters (rows of different adapters in one continuous batch), beside serving one of the
runs alone (`lmforge serve RUN`), in one run. Also checks each adapter's greedy outputs equal serving its run alone,
and reports the memory the adapters add to the base.

The 4 LoRA runs (r 8, a few steps each on different chatterbot-corpus replies, so they differ) are trained into
--work the first time.

    python bench/serve_adapters.py --clients 16 --requests 2 --tokens 32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from serve_load import PROMPTS, load, start  # bench/serve_load.py (this folder is on the path)

from lmforge.recipes.served_model import adapter_runs, attach_adapters, served_model
from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions

MODEL = "smollm2-135m-instruct"
ADAPTERS = 4


def train_runs(work: Path) -> dict[str, Path]:
    from lmforge.data.packaged import DATASETS

    rows = DATASETS["chatterbot-preferences-train"]()
    runs = {}
    for n in range(ADAPTERS):
        run = work / f"a{n}"
        runs[f"a{n}"] = run
        if (run / "model" / "adapter_config.json").is_file():
            continue
        data = work / f"a{n}.jsonl"
        data.write_text("".join(json.dumps({"source": r["prompt"], "target": r["chosen"]}) + "\n"
                                for r in rows[n * 64:(n + 1) * 64]), encoding="utf-8")
        config = work / f"a{n}.yaml"
        config.write_text(f"task: {{name: generation, max_new_tokens: 32}}\nmodel: {MODEL}\n"
                          f"data: {{train: {data}, max_length: 128}}\ntuning: {{peft: {{method: lora, r: 8, alpha: 16}}}}\n"
                          f"train: {{output_dir: {run}, epochs: 1, max_steps: 6, batch_size: 8, lr: 2.0e-3, seed: {n}, "
                          "precision: fp32, tensorboard: false}\n", encoding="utf-8")
        subprocess.run([sys.executable, "-m", "lmforge.cli", "train", str(config)], check=True, capture_output=True)
    return runs


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def greedy_answers(url: str, model: str, tokens: int) -> list[str]:
    def ask(prompt: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0}
        return httpx.post(url + "/chat/completions", json=body, timeout=600).json()["choices"][0]["message"]["content"]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(ask, PROMPTS))


def child(which: str, args: argparse.Namespace, runs: dict[str, Path]) -> dict:
    """One configuration in this process: `mixed` (the base with the 4 adapters) or `alone` (each run on its own,
    a0 timed); its throughput, greedy answers and memory."""
    options = ServeOptions(max_batch=32)
    if which == "mixed":
        served = served_model(MODEL, engine="torch")  # as `lmforge serve --adapter` does
        attach_adapters(served, adapter_runs([f"{n}={r}" for n, r in runs.items()], MODEL, None, False, "fp32",
                                             "torch", False))
        sizes = {"lora": 0.0, "base": 0.0}
        for name, parameter in served.model.named_parameters():
            sizes["lora" if "lora_" in name else "base"] += parameter.numel() * parameter.element_size() / 2**20
        server, url = start(create_app(served, options))
        load(url, list(runs), 2, 1, 4)  # warm-up
        result = load(url, list(runs), args.clients, args.requests, args.tokens)
        answers = {name: greedy_answers(url, name, args.tokens) for name in runs}
        server.should_exit = True
        return {"load": result, "answers": answers, "sizes": sizes, "rss": rss_mb()}
    answers, result = {}, None
    for name, run in runs.items():
        alone = served_model(str(run))
        server, url = start(create_app(alone, options))
        if result is None:
            load(url, alone.name, 2, 1, 4)
            result = load(url, alone.name, args.clients, args.requests, args.tokens)
        answers[name] = greedy_answers(url, alone.name, args.tokens)
        server.should_exit = True
    return {"load": result, "answers": answers, "rss": rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmforge-bench-adapters"))
    parser.add_argument("--child", choices=["mixed", "alone"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = train_runs(args.work)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args, runs)))
        return
    found = {}
    for which in ("alone", "mixed"):  # each in its own process
        done = subprocess.run([sys.executable, __file__, "--child", which, "--clients", str(args.clients), "--requests",
                               str(args.requests), "--tokens", str(args.tokens), "--work", str(args.work)],
                              capture_output=True, text=True, check=True)
        found[which] = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    mixed, alone = found["mixed"]["load"], found["alone"]["load"]
    equal = sum(found["mixed"]["answers"][name] == found["alone"]["answers"][name] for name in runs)
    sizes = found["mixed"]["sizes"]
    print(f"{MODEL}, {args.clients} clients × {args.requests} requests × {args.tokens} tokens, greedy, torch fp32, "
          "each server in its own process\n")
    print("| server | tok/s | p50 s | p99 s | failed | RSS MB |")
    print("|---|---|---|---|---|---|")
    print(f"| 4 adapters on one base, requests mixed | {mixed['throughput']:.1f} | {mixed['p50']:.2f} | "
          f"{mixed['p99']:.2f} | {mixed['failed']} | {found['mixed']['rss']:.0f} |")
    print(f"| one run alone (a0) | {alone['throughput']:.1f} | {alone['p50']:.2f} | {alone['p99']:.2f} | "
          f"{alone['failed']} | {found['alone']['rss']:.0f} (after serving all 4, one at a time) |")
    print(f"\nmixed / alone throughput: {mixed['throughput'] / alone['throughput']:.2f}×")
    print(f"greedy outputs equal to serving the run alone: {equal}/{len(runs)} adapters ({len(PROMPTS)} prompts each)")
    print(f"memory: one copy of the base ({sizes['base']:.0f} MB of weights) + {len(runs)} adapters "
          f"({sizes['lora']:.1f} MB); {len(runs)} servers of one run each would hold {len(runs)} × {sizes['base']:.0f} MB")


if __name__ == "__main__":
    main()
