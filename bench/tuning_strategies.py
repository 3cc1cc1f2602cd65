"""Tuning strategies side by side: dev accuracy, trainable parameters, wall time and peak memory.

Every strategy is an ordinary `lmforge train` run (its own process, so peak RSS is its own) on the same
SST-2 training subset with the packaged MiniLM; each method gets the learning rate it is usually run
with (adapters need larger steps than full fine-tuning).

    python bench/tuning_strategies.py --samples 2000 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SST2_CONFIG, require_sst2

#: name -> (overrides, learning rate)
STRATEGIES = {
    "full": ([], 1e-4),
    "frozen-bottom-4": (["tuning.freeze_layers=4", "tuning.freeze_embeddings=true"], 1e-4),
    "lora-r8": (["tuning.peft.method=lora", "tuning.peft.r=8", "tuning.peft.alpha=16"], 1e-3),  # all-linear
    "lora-r8-query-value": (["tuning.peft.method=lora", "tuning.peft.r=8", "tuning.peft.alpha=16",
                             "tuning.peft.target_modules=[query,value]"], 1e-3),
    "ia3": (["tuning.peft.method=ia3"], 5e-3),
    "prompt-tuning": (["tuning.peft.method=prompt", "tuning.peft.num_virtual_tokens=20"], 3e-2),
    "label-smoothing-0.1": (["tuning.label_smoothing=0.1"], 1e-4),
    "rdrop-1.0": (["tuning.rdrop=1.0"], 1e-4),
}


#: runs `lmforge` in the child and writes its own peak RSS (KiB) to argv[1]
LAUNCHER = ("import resource, sys; from lmforge.cli import main; rc = main(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(rc)")


def run(name: str, samples: int, epochs: int, seed: int, out: Path) -> dict:
    overrides, lr = STRATEGIES[name]
    run_dir, rss_file = out / name, out / f"{name}.rss"
    command = [sys.executable, "-c", LAUNCHER, str(rss_file), "train", str(SST2_CONFIG), f"data.max_train_samples={samples}",
               f"train.epochs={epochs}", f"train.lr={lr}", f"train.seed={seed}", f"train.output_dir={run_dir}",
               "train.tensorboard=false", *overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads((run_dir / "report.json").read_text())
    return {"strategy": name, "lr": lr, "accuracy": report["accuracy"], "trainable": report["trainable_parameters"],
            "total": report["total_parameters"], "train_s": report["train_seconds"], "wall_s": wall,
            "peak_rss_gb": int(rss_file.read_text()) * 1024 / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    require_sst2()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmforge-tuning-") as tmp:
        for name in args.strategies.split(","):
            rows.append(run(name, args.samples, args.epochs, args.seed, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    full = next((r for r in rows if r["strategy"] == "full"), None)
    print(f"SST-2, first {args.samples} training sentences, {args.epochs} epochs, MiniLM-L6, bf16, dev = 872 sentences\n")
    print("| strategy | lr | dev accuracy | Δ vs full | trainable params | share | train time (s) | wall (s) | peak RSS (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        delta = f"{100 * (r['accuracy'] - full['accuracy']):+.1f} pt" if full else ""
        rss = f"{r['peak_rss_gb']:.2f}"
        print(f"| {r['strategy']} | {r['lr']:g} | {r['accuracy']:.4f} | {delta} | {r['trainable']:,} | "
              f"{100 * r['trainable'] / r['total']:.2f}% | {r['train_s']:.0f} | {r['wall_s']:.0f} | {rss} |")


if __name__ == "__main__":
    main()
