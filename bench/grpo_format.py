"""GRPO with an exact-format reward on SmolLM2-135M-Instruct (LoRA): format validity on held-out prompts
before and after, and the KL to the reference (the model with adapters off) during training.

Prompts ask small arithmetic questions and demand the reply `Answer: <number>` and nothing else.
SmolLM2 never answers so at first (validity 0: every sampled reward equal, nothing for GRPO to learn),
so the training reward is shaped: 1 for the exact format, plus partial credit for "answer … number",
for the word "answer", and for brevity. Validity — the exact format, the number need not be right —
is measured with greedy decoding on prompts whose numbers never occur in training.

    python bench/grpo_format.py --train 192 --test 100 --output /tmp/runs/grpo-format
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from lmforge.decode.params import DecodeParams
from lmforge.recipes.generate import open_generator

FORMAT = r"Answer: -?\d+"
ASK = "What is {a} {op} {b}? Reply exactly in the form 'Answer: <number>'."


def rows(count: int, numbers: range, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.choice(numbers), rng.choice(numbers)
        op, value = rng.choice([("plus", a + b), ("minus", a - b), ("times", a * b)])
        out.append({"source": ASK.format(a=a, op=op, b=b), "target": f"Answer: {value}"})
    return out


def validity(target: str, test: list[dict]) -> tuple[float, float, list[str]]:
    """(share in the exact format, share holding the right number, three outputs) with greedy decoding."""
    generator = open_generator(target, max_new_tokens=16)
    outputs = generator.run([r["source"] for r in test], DecodeParams(), batch_size=16)
    texts = [generator.task.text(candidates[0].tokens) for candidates in outputs]
    valid = sum(re.fullmatch(FORMAT, t.strip()) is not None for t in texts) / len(texts)
    right = sum(r["target"].split(": ")[1] in re.findall(r"-?\d+", t) for r, t in zip(test, texts, strict=True))
    return valid, right / len(texts), texts[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--kl-weight", type=float, default=0.04)
    parser.add_argument("--correctness", type=float, default=0.0,
                        help="weight of an exact_match reward against the right 'Answer: N' (0 = format only)")
    parser.add_argument("--output", type=Path, required=True, help="run directory to create")
    args = parser.parse_args()
    work = args.output.with_name(args.output.name + "-data")
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(args.train, range(2, 50), 0)))
    test = rows(args.test, range(50, 99), 1)  # numbers never seen in training
    before, right, examples = validity("smollm2-135m-instruct", test)
    print(f"before: format validity {before:.3f}, right number {right:.3f} on {len(test)} held-out prompts; "
          f"e.g. {examples}", flush=True)
    config = work / "grpo.yaml"
    config.write_text(
        "task: {name: generation, max_new_tokens: 16}\n"
        "model: smollm2-135m-instruct\n"
        f"data: {{train: {work / 'train.jsonl'}, validation_fraction: 0.05, max_length: 96}}\n"
        f"train: {{output_dir: {args.output}, epochs: 1, batch_size: 4, lr: {args.lr}, log_every_steps: 1,\n"
        "        precision: bf16, eval_batch_size: 16, tensorboard: false}\n"
        "tuning:\n"
        "  peft: {method: lora, r: 8}\n"
        f"  sequence: {{method: grpo, samples: {args.samples}, max_new_tokens: 16, kl_weight: {args.kl_weight},\n"
        f"             rewards: [{{name: regex, pattern: '{FORMAT}'}},\n"
        "                       {name: regex, pattern: '(?si).*answer\\W+(is\\W+)?-?\\d+.*', weight: 0.5},\n"
        "                       {name: regex, pattern: '(?si).*answer.*', weight: 0.25},\n"
        "                       {name: length, target: 2, weight: 0.1}"
        + (f",\n                       {{name: exact_match, weight: {args.correctness}}}" if args.correctness else "")
        + "]}\n", encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge.cli", "train", str(config)], check=True)
    seconds = time.perf_counter() - started
    steps = [json.loads(line) for line in (args.output / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "mean_reward" in s]
    after, right, examples = validity(str(args.output), test)
    print(f"after: format validity {after:.3f}, right number {right:.3f}; e.g. {examples}")
    print(f"training: {len(steps)} steps, {len(steps) * 4 * args.samples} sampled outputs, {seconds:.0f} s "
          f"(with the before/after measurements' model loads outside); "
          f"mean reward first 5 steps {sum(s['mean_reward'] for s in steps[:5]) / 5:.3f}, last 5 "
          f"{sum(s['mean_reward'] for s in steps[-5:]) / 5:.3f}; KL to reference max {max(s['kl'] for s in steps):.4f}, "
          f"last {steps[-1]['kl']:.4f}")


if __name__ == "__main__":
    main()
