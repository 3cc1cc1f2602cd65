"""A learned reward optimised by GRPO: SmolLM2-135M-Instruct + LoRA answers chatterbot-corpus user turns, rewarded by
a reward model trained on the packaged preference pairs (examples/reward_chatterbot.yaml: MiniLM, Bradley–Terry).

Prints the reward model's held-out pairwise accuracy, the mean reward of the first and last training steps, and the
reward model's mean score of greedy replies to `--held` validation prompts before and after GRPO. The run's
rewards.png plots the reward per step.

    lmforge train examples/reward_chatterbot.yaml                 # the reward model (runs/reward-chatterbot)
    python bench/reward_grpo.py --reward-run runs/reward-chatterbot --steps 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"


def prompts(split: str, count: int) -> list[dict]:
    from lmforge.data.packaged import DATASETS

    return [{"source": row["prompt"], "target": row["chosen"]} for row in DATASETS[f"chatterbot-preferences-{split}"]()[:count]]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def lmforge(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lmforge.cli", *args], check=True, capture_output=True)


def held_out_reward(reward_run: Path, predictions: Path, held: list[dict]) -> float:
    from lmforge.runs.served_task import served_task

    outputs = [json.loads(line)["generated"] for line in predictions.read_text().splitlines()]
    rows = [{"prompt": row["source"], "completion": text if text.strip() else "."} for row, text in zip(held, outputs, strict=True)]
    return statistics.mean(p["reward"] for p in served_task(reward_run).predict(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward-run", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--held", type=int, default=32)
    parser.add_argument("--output", type=Path, default=None, help="keep the GRPO run here (default: a temporary folder)")
    args = parser.parse_args()
    report = json.loads((args.reward_run / "report.json").read_text())
    print(f"reward model {args.reward_run}: held-out pairwise accuracy {report['pairwise_accuracy']:.4f} "
          f"({report['split']}, {report['count']} pairs; prefer-the-longer baseline "
          f"{report['longer_completion_baseline']['pairwise_accuracy']:.4f})")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        run = args.output or folder / "grpo"
        train = write(folder / "train.jsonl", prompts("train", args.steps * args.batch))
        held = prompts("validation", args.held)
        validation = write(folder / "held.jsonl", held)
        config = folder / "grpo.yaml"
        config.write_text(
            f"task: {{name: generation, max_new_tokens: 24, decode: {{strategy: greedy}}}}\nmodel: {MODEL}\n"
            f"data: {{train: {train}, validation: {validation}, max_length: 128}}\n"
            f"train: {{output_dir: {run}, epochs: 1, batch_size: {args.batch}, lr: 5.0e-4, warmup_steps: 0, "
            "scheduler: constant, log_every_steps: 1, tensorboard: false, eval_batch_size: 32, precision: auto}\n"
            "tuning:\n  peft: {method: lora, r: 8, alpha: 16}\n"
            f"  sequence: {{method: grpo, samples: {args.samples}, max_new_tokens: 24, temperature: 1.0, "
            f"rewards: [{{name: reward_model, run: {args.reward_run.resolve()}}}]}}\n", encoding="utf-8")
        lmforge("evaluate", str(config), "--data", str(validation), "--output", str(folder / "before"))
        before = held_out_reward(args.reward_run, folder / "before" / "predictions.jsonl", held)
        started = time.perf_counter()
        lmforge("train", str(config))
        seconds = time.perf_counter() - started
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rewards = [s["mean_reward"] for s in steps if "mean_reward" in s]
        after = held_out_reward(args.reward_run, run / "predictions.jsonl", held)
        window = max(1, len(rewards) // 5)
        print(f"GRPO ({len(rewards)} steps, batch {args.batch} × {args.samples} samples, {seconds:.0f} s): training mean "
              f"reward, first {window} steps {statistics.mean(rewards[:window]):.3f} → last {window} "
              f"{statistics.mean(rewards[-window:]):.3f}")
        print(f"held-out greedy replies to {args.held} validation prompts, mean reward: before {before:.3f} → after "
              f"{after:.3f}; plot: {run / 'rewards.png'}")


if __name__ == "__main__":
    main()
