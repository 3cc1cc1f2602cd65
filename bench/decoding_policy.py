"""Learned decoding policy vs fixed strategies: Multi30k en→fr, chrF reward; SmolLM2-135M-Instruct zero-shot,
or a fine-tuned translation run (`--model RUN_DIR`, which formats the English sources itself).

The first --train validation sentences are decoded with every arm (greedy, beam-4, top-p 0.9 …), each
alone and timed; the policy (ridge regression from the prompt's features — the mean hidden state of --layer,
with --length also log(1 + prompt length) — to reward − cost_weight × seconds, per arm) is fitted on them
and saved. Each of the next --test sentences is decoded with every arm and then with `decode.strategy: auto`
and each saved policy, back to back (so drifts in the machine's speed fall on all alike); the table gives
each fixed arm's and auto's mean reward (sentence chrF / 100), mean seconds per sentence and tokens/s.

    python bench/decoding_policy.py --train 60 --test 60 --cost-weight 0.0,0.05
    python bench/decoding_policy.py --model /tmp/runs/mrt/ce --arms greedy,beam4 --train 200 --test 200
    python bench/decoding_policy.py --model /tmp/runs/mrt/ce --arms greedy,beam4 --train 100 --held-out-from 200 \
        --test 100 --cost-weight 0.02 --save /tmp/policy-runs.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.policy import PolicyFeatures
from lmforge.files import atomic_write_text
from lmforge.recipes.generate import compare_params, open_generator
from lmforge.tuning.decoding_policy import fit_policy, log_arms
from lmforge.tuning.sequence.rewards import RewardSpec, build_reward

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def read_lines(name: str) -> list[str]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--arms", default="greedy,beam4,topp0.9")
    parser.add_argument("--cost-weight", default="0.0,0.05", help="reward (chrF/100) given up per second, comma-separated")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--layer", type=int, default=-1,
                        help="the policy reads this layer's mean hidden state (0: the input embeddings, no forward pass)")
    parser.add_argument("--length", action="store_true", help="the policy also reads log(1 + prompt length)")
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="a model (zero-shot, with an instruction) or a generation run directory (its own prompt)")
    parser.add_argument("--held-out-from", type=int, help="the held-out sentences start here (default: after --train)")
    parser.add_argument("--save", type=Path, help="write every held-out decode (reward, seconds, tokens, arm) as JSON")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"Multi30k not found at {DATA}")
    english, french = read_lines("val.en.gz"), read_lines("val.fr.gz")
    generator = open_generator(args.model, max_new_tokens=args.max_new_tokens)
    model, tokenizer = generator.model, generator.tokenizer
    is_run = (Path(args.model) / "config.yaml").is_file()
    texts = english if is_run else [f"Translate this sentence into French. Reply with the translation only.\n\n{e}"
                                    for e in english]
    if args.held_out_from is not None and args.held_out_from < args.train:
        parser.error(f"--held-out-from {args.held_out_from} overlaps the {args.train} training sentences")
    first = args.train if args.held_out_from is None else args.held_out_from
    held_out = range(first, first + args.test)
    prompts = generator.prompt_ids(texts[:args.train] + [texts[i] for i in held_out])
    references = [[f] for f in french[:args.train] + [french[i] for i in held_out]]
    arms = {spec: compare_params(spec, seed=0) for spec in args.arms.split(",")}
    reward = build_reward([RewardSpec(name="chrf")])

    start = time.perf_counter()
    train = log_arms(model, tokenizer, prompts[:args.train], references[:args.train], arms, reward, args.max_new_tokens,
                     generator.stop_strings)
    print(f"logged {len(arms)} arms on {args.train} sentences in {time.perf_counter() - start:.0f} s")
    reader = PolicyFeatures(args.layer, args.length)
    features = reader.read(model, prompts[:args.train], tokenizer.pad_token_id)
    cost_weights = [float(c) for c in args.cost_weight.split(",")]
    policies = {}
    for cost_weight in cost_weights:
        folder = Path(tempfile.mkdtemp(prefix="policy-"))
        fit_policy(features, train.utilities(cost_weight),
                   {name: p.model_dump(exclude_defaults=True) for name, p in arms.items()}, cost_weight,
                   reader=reader).save(folder)
        policies[cost_weight] = DecodeParams(strategy="auto", policy=str(folder))

    def decode(params: DecodeParams, prompt: list[int], reference: list[str]) -> tuple[float, float, int, str | None]:
        """(reward, seconds, output tokens, the arm auto chose) of decoding `prompt` alone."""
        begin = time.perf_counter()
        [best] = generate(model, tokenizer, [prompt], params, args.max_new_tokens, generator.stop_strings)[0]
        seconds = time.perf_counter() - begin
        text = tokenizer.decode(best.tokens, skip_special_tokens=True).strip()
        return reward([text], [reference])[0], seconds, len(best.tokens), best.arm

    # every held-out sentence runs each fixed arm and each policy back to back, so drifts in the machine's
    # speed fall on all of them alike
    fixed = {name: [] for name in arms}
    auto = {c: [] for c in cost_weights}
    for prompt, reference in zip(prompts[args.train:], references[args.train:], strict=True):
        for name, params in arms.items():
            fixed[name].append(decode(params, prompt, reference))
        for cost_weight, params in policies.items():
            auto[cost_weight].append(decode(params, prompt, reference))
    print(f"decoded {args.test} held-out sentences in {time.perf_counter() - start:.0f} s (with the logging)")

    def row(name: str, cost_weight: str, runs: list[tuple[float, float, int, str | None]], usage: str = "–") -> str:
        """A table row: mean reward, mean seconds per sentence, output tokens per second."""
        seconds = sum(run[1] for run in runs)
        return (f"| {name} | {cost_weight} | {statistics.mean(run[0] for run in runs):.4f} | {seconds / len(runs):.3f} | "
                f"{sum(run[2] for run in runs) / seconds:.1f} | {usage} |")

    print("| decoding | cost weight | mean reward (chrF/100) | mean s / sentence | tokens / s | arms chosen |")
    print("|---|---|---|---|---|---|")
    for name, runs in fixed.items():
        print(row(f"{name} (fixed)", "–", runs))
    for cost_weight in cost_weights:
        chosen = [run[3] for run in auto[cost_weight]]
        usage = ", ".join(f"{name} {chosen.count(name)}" for name in arms)
        print(row("auto", str(cost_weight), auto[cost_weight], usage))
        best = [max(options, key=lambda run: run[0] - cost_weight * run[1]) for options in zip(*fixed.values(), strict=True)]
        print(row("  (oracle per sentence)", str(cost_weight), best))
    best_arm = max(fixed, key=lambda name: statistics.mean(run[0] for run in fixed[name]))
    print(f"\nauto − {best_arm} (the best fixed arm), paired over the held-out sentences, mean [95% bootstrap interval]:")
    for cost_weight in cost_weights:
        pairs = list(zip(auto[cost_weight], fixed[best_arm], strict=True))
        reward_gap = paired_interval([a[0] - b[0] for a, b in pairs])
        seconds_gap = paired_interval([a[1] - b[1] for a, b in pairs])
        print(f"  cost {cost_weight}: reward {reward_gap}, seconds {seconds_gap}")
    if args.save:
        atomic_write_text(args.save, json.dumps({"fixed": fixed, "auto": {str(c): runs for c, runs in auto.items()}}))


def paired_interval(differences: list[float], resamples: int = 2000) -> str:
    """'mean [low, high]': the mean of per-sentence differences and its 95% bootstrap interval."""
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(differences, k=len(differences))) for _ in range(resamples))
    return f"{statistics.mean(differences):+.4f} [{means[int(0.025 * resamples)]:+.4f}, {means[int(0.975 * resamples)]:+.4f}]"


if __name__ == "__main__":
    main()
