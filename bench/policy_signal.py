"""Is there anything in a prompt that says which decoding arm will win on it? Reads the held-out decodes that
`bench/decoding_policy.py --save` wrote and rank-correlates, per sentence, the reward gap between two fixed
arms with signals readable before decoding: the prompt's length and the entropy and top-2 margin of the
first generated token's distribution (from the prefill's logits).

    python bench/decoding_policy.py --model /tmp/runs/mrt/ce --arms greedy,beam4 --train 100 --held-out-from 200 \\
        --test 100 --cost-weight 0.02 --save /tmp/policy-runs.json
    python bench/policy_signal.py --runs /tmp/policy-runs.json --model /tmp/runs/mrt/ce --held-out-from 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from decoding_policy import read_lines
from scipy.stats import spearmanr

from lmforge.recipes.generate import open_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="the JSON of decoding_policy.py --save")
    parser.add_argument("--model", required=True, help="the generation run directory those decodes used")
    parser.add_argument("--held-out-from", type=int, required=True, help="as given to decoding_policy.py")
    parser.add_argument("--arms", default="greedy,beam4", help="the gap is the second arm's reward minus the first's")
    args = parser.parse_args()
    fixed = json.loads(args.runs.read_text())["fixed"]
    cheap, dear = args.arms.split(",")
    gaps = [b[0] - a[0] for a, b in zip(fixed[cheap], fixed[dear], strict=True)]
    english = read_lines("val.en.gz")[args.held_out_from:args.held_out_from + len(gaps)]
    generator = open_generator(args.model)
    signals: dict[str, list[float]] = {"prompt tokens": [], "first-token entropy": [], "first-token top-2 margin": []}
    with torch.no_grad():
        for prompt in generator.prompt_ids(english):
            logprobs = generator.model(torch.tensor([prompt])).logits[0, -1].float().log_softmax(-1)
            top = logprobs.topk(2).values
            signals["prompt tokens"].append(len(prompt))
            signals["first-token entropy"].append(float(-(logprobs.exp() * logprobs).sum()))
            signals["first-token top-2 margin"].append(float(top[0] - top[1]))
    print(f"{dear} − {cheap} reward per sentence: {dear} better on {sum(g > 1e-3 for g in gaps)}, {cheap} on "
          f"{sum(g < -1e-3 for g in gaps)}, tied on {sum(abs(g) <= 1e-3 for g in gaps)} of {len(gaps)}")
    print("| signal | Spearman ρ with the gap | p |")
    print("|---|---|---|")
    for name, values in signals.items():
        result = spearmanr(values, gaps)
        print(f"| {name} | {result.statistic:+.3f} | {result.pvalue:.2f} |")


if __name__ == "__main__":
    main()
