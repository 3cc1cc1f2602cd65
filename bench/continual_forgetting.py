"""Continual learning: SST-2 sentiment first, then chatterbot-corpus topics — forgetting with and without replay/EWC.

The old run is an ordinary SST-2 run (give one with --old-run, or the script trains it on --samples
sentences). Each strategy then continues it on `dataset:chatterbot-topics` with `tuning.continual`;
the run's report holds the old task's dev accuracy before/after (forgetting) and the new task's gain.

    python bench/continual_forgetting.py --old-run runs/sst2-20k-final --epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, SST2_CONFIG, lmforge, require_sst2

TOPICS_CONFIG = ROOT / "src" / "lmforge" / "examples" / "demo.yaml"
STRATEGIES = {
    "plain": [],
    "replay-500": ["tuning.continual.replay=500"],
    "ewc": ["tuning.continual.ewc={ewc}"],
    "replay-500+ewc": ["tuning.continual.replay=500", "tuning.continual.ewc={ewc}"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-run", help="an SST-2 run directory to continue (default: train one)")
    parser.add_argument("--samples", type=int, default=2000, help="SST-2 sentences for the old run it trains")
    parser.add_argument("--epochs", type=int, default=5, help="epochs on the topics task")
    parser.add_argument("--ewc", type=float, default=1e5, help="EWC strength")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    require_sst2()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmforge-continual-") as tmp:
        old_run = Path(args.old_run).resolve() if args.old_run else Path(tmp) / "sst2"
        if not args.old_run:
            lmforge("train", str(SST2_CONFIG), f"data.max_train_samples={args.samples}", "train.epochs=3",
                    f"train.output_dir={old_run}", "train.tensorboard=false")
        for name in args.strategies.split(","):
            run = Path(tmp) / name
            overrides = [o.format(ewc=args.ewc) for o in STRATEGIES[name]]
            lmforge("train", str(TOPICS_CONFIG), f"tuning.continual.previous_run={old_run}", f"train.epochs={args.epochs}",
                    "train.patience=null", f"train.output_dir={run}", "train.tensorboard=false", *overrides)
            report = json.loads((run / "report.json").read_text())
            continual = report["continual"]
            rows.append((name, continual, report["train_seconds"]))
            print(json.dumps({"strategy": name, **continual}), file=sys.stderr)
    print(f"Old task: SST-2 dev ({old_run.name}); new task: chatterbot topics test split, {args.epochs} epochs, "
          f"MiniLM-L6, bf16, EWC λ = {args.ewc:g}\n")
    print("| strategy | SST-2 dev acc before | after | after, old labels only | forgetting (pt) | topics acc before "
          "| after | topics macro-F1 after | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, c, seconds in rows:
        old, new = c["old_task"], c["new_task"]
        print(f"| {name} | {old['before']['accuracy']:.4f} | {old['after']['accuracy']:.4f} | "
              f"{old['after']['within_old_labels']['accuracy']:.4f} | "
              f"{100 * old['forgetting']:.2f} | {new['before']['accuracy']:.4f} | {new['after']['accuracy']:.4f} | "
              f"{new['after']['macro_f1']:.4f} | {seconds:.0f} |")

if __name__ == "__main__":
    main()
