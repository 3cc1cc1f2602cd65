"""Data augmentation on a small SST-2 subset: dev accuracy with and without augmented rows, several seeds.

The augmented files come from `lmforge augment` on the same subset (same config, same
data.max_train_samples), e.g.

    lmforge augment examples/sst2.yaml data.max_train_samples=500 --method eda --output runs/sst2-500-eda.jsonl
    lmforge augment examples/sst2.yaml data.max_train_samples=500 --method back-translation \\
        --via runs/en-fr --via runs/fr-en --output runs/sst2-500-bt.jsonl   # runs: examples/multi30k_fr_en_smollm2.yaml
    python bench/augmentation.py --samples 500 --epochs 5 --seeds 1,2,3 \\
        --extra eda=runs/sst2-500-eda.jsonl --extra back-translation=runs/sst2-500-bt.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import SST2_CONFIG, lmforge, mean_std, require_sst2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=FILE", help="augmented rows to add")
    args = parser.parse_args()
    require_sst2()
    conditions = {"none": None} | {name: str(Path(path).resolve()) for name, path in (e.split("=", 1) for e in args.extra)}
    results: dict[str, list[float]] = {name: [] for name in conditions}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="lmforge-aug-") as tmp:
        for seed in args.seeds.split(","):
            for name, extra in conditions.items():
                run = Path(tmp) / f"{name}-{seed}"
                overrides = [f"data.train_extra=[{extra}]"] if extra else []
                lmforge("train", str(SST2_CONFIG), f"data.max_train_samples={args.samples}", f"train.epochs={args.epochs}",
                        f"train.seed={seed}", f"train.output_dir={run}", "train.tensorboard=false", *overrides)
                results[name].append(json.loads((run / "report.json").read_text())["accuracy"])
                sizes[name] = sum(1 for _ in (run / "data" / "train.jsonl").open())
                print(json.dumps({"augmentation": name, "seed": seed, "accuracy": results[name][-1]}), file=sys.stderr)
    print(f"SST-2, first {args.samples} training sentences, {args.epochs} epochs, MiniLM-L6, bf16, seeds {args.seeds}\n")
    print("| augmentation | training rows | dev accuracy (%) |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {sizes[name]} | {mean_std(values)} |")


if __name__ == "__main__":
    main()
