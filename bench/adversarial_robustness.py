"""Adversarial training vs plain fine-tuning: clean and perturbed dev accuracy over several seeds.

Each run is `lmforge train` (SST-2 training subset, packaged MiniLM) followed by
`lmforge evaluate RUN --perturbed` (the dev set with typos and embedding-neighbour word swaps, seeded).

    python bench/adversarial_robustness.py --samples 2000 --epochs 3 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import SST2_CONFIG, lmforge, mean_std, require_sst2

METHODS = {
    "plain": [],
    "fgm": ["tuning.adversarial.method=fgm", "tuning.adversarial.epsilon=1.0"],
    "pgd": ["tuning.adversarial.method=pgd", "tuning.adversarial.epsilon=1.0", "tuning.adversarial.alpha=0.3",
            "tuning.adversarial.steps=3"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--methods", default="plain,fgm")
    args = parser.parse_args()
    require_sst2()
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in args.methods.split(",")}
    with tempfile.TemporaryDirectory(prefix="lmforge-adv-") as tmp:
        for seed in args.seeds.split(","):
            for method in results:
                run = Path(tmp) / f"{method}-{seed}"
                lmforge("train", str(SST2_CONFIG), f"data.max_train_samples={args.samples}", f"train.epochs={args.epochs}",
                        f"train.seed={seed}", f"train.output_dir={run}", "train.tensorboard=false", *METHODS[method])
                lmforge("evaluate", str(run), "--perturbed")
                report = json.loads((run / "evaluations" / "validation" / "report.json").read_text())
                results[method].append((report["accuracy"], report["perturbed"]["accuracy"]))
                print(json.dumps({"method": method, "seed": seed, "clean": results[method][-1][0],
                                  "perturbed": results[method][-1][1]}), file=sys.stderr)

    print(f"SST-2, first {args.samples} training sentences, {args.epochs} epochs, MiniLM-L6, bf16, seeds {args.seeds}\n")
    print("| training | clean dev accuracy (%) | perturbed dev accuracy (%) | drop (pt) |")
    print("|---|---|---|---|")
    for method, rows in results.items():
        drop = [c - p for c, p in rows]
        print(f"| {method} | {mean_std([c for c, _ in rows])} | {mean_std([p for _, p in rows])} | {mean_std(drop)} |")


if __name__ == "__main__":
    main()
