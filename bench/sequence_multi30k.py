"""Sequence-level training on Multi30k en→fr: does MRT (or GRPO) on top of the cross-entropy model raise
validation sacreBLEU, with greedy and beam decoding?

Stages (each skipped when its output exists, so the script can be re-run to finish):
  ce        SmolLM2-135M-Instruct fully fine-tuned with cross-entropy on the first --ce-rows pairs
            (examples/multi30k_smollm2.yaml, 1 epoch) — the tasks issue's recipe on fewer rows
  sequence  that model trained further with `tuning.sequence` (method, reward, samples) on the next
            --sequence-rows pairs, never seen by the CE model
  control   the same further rows with plain cross-entropy, for the same number of steps: what more data
            alone gives
  evaluate  every model on the first --eval-rows validation pairs (or --eval-split train from --eval-start),
            greedy and beam-4 (sacreBLEU, chrF), and the sequence model minus the control with its 95%
            paired-bootstrap interval

    python bench/sequence_multi30k.py --output /tmp/runs/mrt --ce-rows 3000 --sequence-rows 800
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

from lmforge.metrics.generation import paired_bleu_difference

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "multi30k"
CONFIG = ROOT / "examples" / "multi30k_smollm2.yaml"
DECODERS = {"greedy": [], "beam4": ["task.decode.strategy=beam", "task.decode.num_beams=4"]}


def pairs(split: str, start: int, count: int) -> list[dict]:
    def lines(language: str) -> list[str]:
        with gzip.open(DATA / f"{split}.{language}.gz", "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle]
    return [{"source": en, "target": fr}
            for en, fr in list(zip(lines("en"), lines("fr"), strict=True))[start:start + count]]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def lmforge(*args: str) -> float:
    """Run the CLI; its wall seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge.cli", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--ce-rows", type=int, default=3000)
    parser.add_argument("--sequence-rows", type=int, default=800)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--eval-split", choices=("val", "train"), default="val",
                        help="score on validation pairs, or on training pairs no model was trained on (a second check)")
    parser.add_argument("--eval-start", type=int, default=0, help="first pair of --eval-split scored")
    parser.add_argument("--method", choices=("mrt", "grpo", "scst"), default="mrt")
    parser.add_argument("--reward", default="bleu", help="reward name(s), comma-separated, equal weights")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sharpness", type=float, default=1.0)
    parser.add_argument("--candidates", choices=("sample", "beam"), default="sample")
    parser.add_argument("--ce-weight", type=float, default=0.0, help="+ this × token cross-entropy (the control's loss)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stages", default="ce,sequence,control,evaluate")
    args = parser.parse_args()
    if not (DATA / "val.en.gz").is_file():
        sys.exit(f"this benchmark needs Multi30k at {DATA}")
    if args.eval_split == "train" and args.eval_start < args.ce_rows + args.sequence_rows:
        sys.exit(f"--eval-start {args.eval_start}: training pairs below {args.ce_rows + args.sequence_rows} are trained on")
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    seconds = json.loads((out / "seconds.json").read_text()) if (out / "seconds.json").is_file() else {}
    further = write_rows(out / "further.jsonl", pairs("train", args.ce_rows, args.sequence_rows))
    validation = write_rows(out / "validation.jsonl", pairs(args.eval_split, args.eval_start, args.eval_rows))
    common = [f"data.validation={validation}", "data.max_eval_samples=null", f"train.batch_size={args.batch_size}"]
    if "ce" in stages and not (out / "ce" / "model").is_dir():
        seconds["ce"] = lmforge("train", str(CONFIG), f"data.max_train_samples={args.ce_rows}", *common,
                                f"train.output_dir={out / 'ce'}", "train.batch_size=16")
    rewards = "[" + ",".join(f"{{name: {name}}}" for name in args.reward.split(",")) + "]"
    further_run = [f"model={out / 'ce' / 'model'}", f"data.train={further}", "data.max_train_samples=null", *common,
                   f"train.lr={args.lr}", "train.warmup_ratio=0.0", "train.log_every_steps=5"]
    if "sequence" in stages and not (out / "sequence" / "model").is_dir():
        sequence = (f"tuning.sequence={{method: {args.method}, samples: {args.samples}, sharpness: {args.sharpness}, "
                    f"candidates: {args.candidates}, ce_weight: {args.ce_weight}, max_new_tokens: 64, rewards: {rewards}}}")
        seconds["sequence"] = lmforge("train", str(CONFIG), *further_run, sequence, f"train.output_dir={out / 'sequence'}")
    if "control" in stages and not (out / "control" / "model").is_dir():
        seconds["control"] = lmforge("train", str(CONFIG), *further_run, f"train.output_dir={out / 'control'}")
    (out / "seconds.json").write_text(json.dumps(seconds, indent=1), encoding="utf-8")
    if "evaluate" not in stages:
        return
    rows = []
    for name in ("ce", "control", "sequence"):
        if not (out / name / "model").is_dir():
            continue
        for decoder, overrides in DECODERS.items():
            report = out / f"eval-{name}-{decoder}"
            if not (report / "report.json").is_file():
                lmforge("evaluate", str(CONFIG), f"model={out / name / 'model'}", *overrides, "--data", str(validation),
                        "--output", str(report))
            metrics = json.loads((report / "report.json").read_text(encoding="utf-8"))
            rows.append((name, decoder, metrics["bleu"], metrics["chrf"]))
    print(f"| model | decoding | BLEU | chrF |   ({args.eval_rows} {args.eval_split} pairs from {args.eval_start})")
    print("|---|---|---|---|")
    for name, decoder, bleu, chrf in rows:
        print(f"| {name} | {decoder} | {bleu:.2f} | {chrf:.2f} |")
    print_paired_differences(out, validation)
    print(f"\nwall seconds: {seconds}")


def print_paired_differences(out: Path, validation: Path) -> None:
    """BLEU of the sequence-trained model minus the control's, per decoder, with its 95% paired-bootstrap interval."""
    references = [json.loads(line)["target"] for line in validation.read_text(encoding="utf-8").splitlines()]
    for decoder in DECODERS:
        found = [out / f"eval-{name}-{decoder}" / "predictions.jsonl" for name in ("control", "sequence")]
        if not all(path.is_file() for path in found):
            continue
        control, sequence = ([json.loads(line)["generated"] for line in path.read_text(encoding="utf-8").splitlines()]
                             for path in found)
        result = paired_bleu_difference(control, sequence, references)
        print(f"sequence − control, {decoder}: {result.difference:+.2f} BLEU [95% paired bootstrap "
              f"{result.low:+.2f}, {result.high:+.2f}], share of resamples not better {result.p_not_better:.3f}")


if __name__ == "__main__":
    main()
