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

With --kinds translate,dialogue,grounded (a model, zero-shot) the prompts are a mixed stream, the kinds in
turn: Multi30k sentences to translate, chatterbot-corpus user turns to answer (reward: chrF against the corpus's
reply), and customer questions with FAQ entries in the system message (dataset:chatterbot-grounded-dialogues,
reward: chrF against the entry's answer); the table then also splits each decoding's reward by kind.

    python bench/decoding_policy.py --kinds translate,dialogue --arms greedy,beam4,contrastive --train 80 --test 100
    python bench/decoding_policy.py --kinds translate,grounded --arms greedy,beam4,contrastive --train 80 --test 120
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
from lmforge.decode.policy_fit import fit_policy, log_arms
from lmforge.decode.request import DecodeRequest
from lmforge.files import atomic_write_text
from lmforge.metrics.rewards import RewardSpec, build_reward
from lmforge.recipes.generate import compare_params, open_generator
from lmforge.recipes.policy import labelled_prompts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
INSTRUCTION = "Translate this sentence into French. Reply with the translation only.\n\n"


def read_lines(name: str) -> list[str]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def chat(user: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def translation_rows(is_run: bool) -> list[dict]:
    """Every Multi30k validation pair as a data row; a run formats the English itself."""
    return [{"source": english, "target": french} if is_run else chat(INSTRUCTION + english, french)
            for english, french in zip(read_lines("val.en.gz"), read_lines("val.fr.gz"), strict=True)]


def zero_shot_only(kind: str, is_run: bool) -> None:
    if is_run:
        raise SystemExit(f"--kinds {kind}: give a model (zero-shot); a run formats every prompt for its own task")


def dialogue_rows(is_run: bool) -> list[dict]:
    """The user's first turn and the corpus's reply of every chatterbot-corpus dialogue."""
    from lmforge.data.packaged import chatterbot_dialogues

    zero_shot_only("dialogue", is_run)
    return [chat(d["messages"][0]["content"], d["messages"][1]["content"]) for d in chatterbot_dialogues()]


def grounded_rows(is_run: bool) -> list[dict]:
    """chatterbot-corpus questions with FAQ entries in the system message (dataset:chatterbot-grounded-dialogues):
    the reply is read off the matching entry, or passes the question on when none matches."""
    from lmforge.data.packaged import chatterbot_grounded_dialogues

    zero_shot_only("grounded", is_run)
    return [{"messages": row["messages"]} for row in chatterbot_grounded_dialogues()]


KINDS = {"translate": translation_rows, "dialogue": dialogue_rows, "grounded": grounded_rows}


def interleaved(per_kind: list[list], start: int, count: int) -> list:
    """`count` rows per kind from `start` on, taking the kinds in turn."""
    return [rows[i] for i in range(start, start + count) for rows in per_kind]


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
    parser.add_argument("--kinds", default="translate", help="prompt kinds, mixed in turn: translate, dialogue, grounded")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"Multi30k not found at {DATA}")
    kinds = args.kinds.split(",")
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or args.train % len(kinds) or args.test % len(kinds):
        parser.error(f"--kinds: choose from {', '.join(KINDS)}; --train and --test split evenly between them")
    generator = open_generator(args.model, max_new_tokens=args.max_new_tokens)
    model, tokenizer = generator.model, generator.tokenizer
    is_run = (Path(args.model) / "config.yaml").is_file()
    per_kind = [KINDS[kind](is_run) for kind in kinds]
    train_each, test_each = args.train // len(kinds), args.test // len(kinds)
    if args.held_out_from is not None and args.held_out_from < train_each:
        parser.error(f"--held-out-from {args.held_out_from} overlaps the {train_each} training rows of each kind")
    first = train_each if args.held_out_from is None else args.held_out_from
    rows = interleaved(per_kind, 0, train_each) + interleaved(per_kind, first, test_each)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rows.jsonl"
        data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        prompts, references = labelled_prompts(generator, str(data))
    held_out_kinds = kinds * test_each
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
        [best] = generate(model, tokenizer, DecodeRequest([prompt], params, args.max_new_tokens, generator.stop_strings))[0]
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
    if len(kinds) > 1:
        def of_kind(runs: list, kind: str) -> list:
            return [run for run, k in zip(runs, held_out_kinds, strict=True) if k == kind]
        decodings = [*((f"{name} (fixed)", runs) for name, runs in fixed.items()),
                     *((f"auto {c}", auto[c]) for c in cost_weights)]
        for name, runs in decodings:
            means = ", ".join(f"{kind} {statistics.mean(run[0] for run in of_kind(runs, kind)):.4f}" for kind in kinds)
            print(f"mean reward by kind, {name}: {means}")
        for cost_weight in cost_weights:
            usage = "; ".join(f"{kind}: " + ", ".join(f"{arm} {sum(run[3] == arm for run in of_kind(auto[cost_weight], kind))}"
                                                     for arm in arms) for kind in kinds)
            print(f"arms auto {cost_weight} chose by kind: {usage}")

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
        atomic_write_text(args.save, json.dumps({"fixed": fixed, "auto": {str(c): runs for c, runs in auto.items()},
                                                 "kinds": held_out_kinds}))


def paired_interval(differences: list[float], resamples: int = 2000) -> str:
    """'mean [low, high]': the mean of per-sentence differences and its 95% bootstrap interval."""
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(differences, k=len(differences))) for _ in range(resamples))
    return f"{statistics.mean(differences):+.4f} [{means[int(0.025 * resamples)]:+.4f}, {means[int(0.975 * resamples)]:+.4f}]"


if __name__ == "__main__":
    main()
