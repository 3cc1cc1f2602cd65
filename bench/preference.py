"""Preference tuning: lmforge's `tuning.preference` (LoRA-DPO) beside TRL's DPOTrainer, same model, data and settings.

SmolLM2-135M-Instruct with LoRA (r 8, all linear layers), the packaged chatterbot-corpus preference pairs
(`dataset:chatterbot-preferences-train`: a user turn, its own reply chosen, another topic's reply rejected),
rendered through the model's chat template on both sides, batch 8, AdamW lr 5e-4, β 0.1, gradient checkpointing
(TRL's default) on both sides, `--precision` on both sides (fp32, or bf16 autocast: TRL's DPOConfig defaults to
bf16, so the bench sets it), `--steps` steps. Each
configuration runs in its own process (peak RSS is its own): lmforge DPO, lmforge SFT on the chosen replies (the
memory baseline LoRA-DPO is compared with) and TRL's DPOTrainer. Prints seconds per step, peak RSS and ratios,
and lmforge's held-out preference accuracy before and after on the first `--validation` validation pairs (of 218;
scoring them is part of lmforge's measured training time, so keep it small for a speed comparison).

    python bench/preference.py --steps 20 --validation 16
    python bench/preference.py --steps 200 --validation 218 --configs lmforge-dpo   # does it learn?
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"
BATCH, LR, BETA, RANK = 8, 5e-4, 0.1, 8


def rows(split: str, count: int | None = None) -> list[dict]:
    from lmforge.data.packaged import DATASETS

    return DATASETS[f"chatterbot-preferences-{split}"]()[:count]


def run_lmforge(folder: Path, steps: int, sft: bool, validation_rows: int, precision: str) -> dict:
    train = folder / "train.jsonl"
    pairs = rows("train", steps * BATCH)
    with train.open("w") as handle:
        for row in pairs:
            record = {"source": row["prompt"], "target": row["chosen"]} if sft else row
            handle.write(json.dumps(record) + "\n")
    validation = folder / "validation.jsonl"
    with validation.open("w") as handle:
        for row in rows("validation", validation_rows):
            handle.write(json.dumps({"source": row["prompt"], "target": row["chosen"]} if sft else row) + "\n")
    preference = "" if sft else f", preference: {{method: dpo, beta: {BETA}}}"
    tuning = f"{{peft: {{method: lora, r: {RANK}, alpha: {2 * RANK}}}{preference}}}"
    config = folder / "cfg.yaml"
    config.write_text(f"task: {{name: generation, decode: {{strategy: greedy}}, max_new_tokens: 24}}\nmodel: {MODEL}\n"
                      f"tuning: {tuning}\ntrain: {{epochs: 1, batch_size: {BATCH}, lr: {LR}, warmup_steps: 0, "
                      f"scheduler: constant, precision: {precision}, tensorboard: false, log_every_steps: 1, gradient_checkpointing: true, "
                      f"eval_batch_size: 16}}\ndata: {{max_length: 256}}\n")
    run = folder / "run"
    command = [sys.executable, "-m", "lmforge.cli", "train", str(config), f"data.train={train}",
               f"data.validation={validation}", f"train.output_dir={run}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    report = json.loads((run / "report.json").read_text())
    return {"seconds": seconds, "train_seconds": report["train_seconds"], "steps": steps,
            "accuracy_before": report.get("before_training", {}).get("preference_accuracy"),
            "accuracy_after": report.get("preference_accuracy"),
            "reward_accuracy": report.get("reward_accuracy"), "last": logged[-1]}


def run_trl(folder: Path, steps: int, precision: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from lmforge.models.resolve import resolve_model

    path = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    conversational = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                       "chosen": [{"role": "assistant", "content": r["chosen"]}],
                       "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows("train", steps * BATCH)]
    args = DPOConfig(output_dir=str(folder), per_device_train_batch_size=BATCH, learning_rate=LR, beta=BETA,
                     max_steps=steps, lr_scheduler_type="constant", warmup_steps=0, report_to=[], use_cpu=True,
                     save_strategy="no", logging_steps=1, disable_tqdm=True, max_length=512, seed=0,
                     bf16=precision == "bf16")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(conversational),
                         processing_class=tokenizer,
                         peft_config=LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    started = time.perf_counter()
    trainer.train()
    return {"train_seconds": time.perf_counter() - started, "steps": steps}


def child(which: str, steps: int, validation_rows: int, precision: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"pref-{which}-") as tmp:
        if which == "trl":
            result = run_trl(Path(tmp), steps, precision)
        else:
            result = run_lmforge(Path(tmp), steps, which == "lmforge-sft", validation_rows, precision)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb"] = max(own, kids) / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--validation", type=int, default=16, help="held-out pairs lmforge scores (of 218)")
    parser.add_argument("--configs", default="lmforge-dpo,trl,lmforge-sft")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="both sides")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.validation, args.precision)
        return
    results = {}
    for which in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", which, "--steps", str(args.steps),
                              "--validation", str(args.validation), "--precision", args.precision],
                             capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{which}: failed\n{out.stderr[-3000:]}")
            continue
        results[which] = json.loads(line[7:])
        print(f"{which}: {json.dumps(results[which])}", flush=True)
    print(f"\n{MODEL} + LoRA r{RANK}, batch {BATCH}, {args.steps} steps, {args.precision}, gradient checkpointing, "
          f"{args.validation} held-out pairs\n")
    print("| config | s/step (training) | peak RSS MB | vs TRL speed | held-out preference accuracy before → after |")
    print("|---|---|---|---|---|")
    trl = results.get("trl")
    for which, r in results.items():
        per_step = r["train_seconds"] / r["steps"]
        ratio = f"{(trl['train_seconds'] / trl['steps']) / per_step:.2f}×" if trl else "–"
        accuracy = f"{r['accuracy_before']:.3f} → {r['accuracy_after']:.3f}" if r.get("accuracy_before") is not None \
            else "–"
        print(f"| {which} | {per_step:.2f} | {r['peak_rss_mb']:.0f} | {ratio} | {accuracy} |")
    if "lmforge-dpo" in results and "lmforge-sft" in results:
        print(f"\nLoRA-DPO peak RSS / LoRA-SFT peak RSS: "
              f"{results['lmforge-dpo']['peak_rss_mb'] / results['lmforge-sft']['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
