"""Repetition and diversity of open-ended text: greedy vs contrastive search (and others) on SmolLM2.

50 open-ended prompts through the chat template, --new-tokens each. Measures computed offline, per
output then averaged (Su et al. 2022): rep-n = 100 × (1 − distinct n-grams / n-grams), diversity =
Π_{n=2..4} (1 − rep-n / 100), plus the mean tokens and the model's own mean log-prob per token
(how likely the text is under the model: greedy is the upper bound, lower means more surprising).

    python bench/decode_diversity.py --strategies greedy,contrastive,topp0.9
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lmforge.recipes.generate import compare_params, mean_logprob, open_generator

TOPICS = ["the ocean", "a rainy afternoon", "learning to swim", "an old library", "the first day of school", "a mountain "
          "village", "coffee", "a lost dog", "the night sky", "a busy market", "winter mornings", "a train journey",
          "gardening", "a thunderstorm", "the moon", "an abandoned house", "friendship", "a small bakery", "autumn leaves",
          "a city at night", "the desert", "a birthday party", "an old photograph", "a river", "a lighthouse", "bicycles",
          "a snowy forest", "the circus", "a museum", "a violin", "a fishing boat", "a long flight", "the summer holidays",
          "a farm", "a robot", "a treasure map", "a quiet beach", "a football match", "a haunted castle", "a bookshop",
          "the wind", "a volcano", "a wedding", "a spaceship", "a street musician", "a cat on a roof", "a clock tower",
          "a picnic", "an island", "the first snow"]


def rep_n(tokens: list[int], n: int) -> float:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 100.0 * (1 - len(set(grams)) / len(grams)) if grams else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="greedy,contrastive,topp0.9")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = open_generator("smollm2-135m-instruct", max_new_tokens=args.new_tokens)
    texts = [f"Write a paragraph about {topic}." for topic in TOPICS[: args.prompts]]
    prompts = generator.prompt_ids(texts)
    print(f"{len(texts)} prompts, {args.new_tokens} new tokens at most, SmolLM2-135M-Instruct fp32")
    print("| strategy | rep-2 | rep-3 | rep-4 | diversity | mean tokens | mean log-prob | s |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.strategies.split(","):
        started = time.perf_counter()
        outputs = [c[0].tokens for c in generator.run(texts, compare_params(spec, seed=0), args.batch_size)]
        seconds = time.perf_counter() - started
        reps = {n: statistics.mean(rep_n(t, n) for t in outputs) for n in (2, 3, 4)}
        diversity = statistics.mean((1 - rep_n(t, 2) / 100) * (1 - rep_n(t, 3) / 100) * (1 - rep_n(t, 4) / 100)
                                    for t in outputs)
        logprob = statistics.mean(mean_logprob(generator.model, p, t) for p, t in zip(prompts, outputs, strict=True))
        print(f"| {spec} | {reps[2]:.2f} | {reps[3]:.2f} | {reps[4]:.2f} | {diversity:.3f} | "
              f"{statistics.mean(len(t) for t in outputs):.1f} | {logprob:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
