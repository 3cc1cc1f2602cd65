"""Greedy b1 on llama.cpp, side by side: llama-cpp-python's own loop (its own process, as in decode_speed.py)
against lmforge's engine on llama.cpp in this process, alternating, exactly `--tokens` new tokens of the first
chat prompt; prints each peer's tok/s and the ratio to llama.cpp's loop.

    python bench/llama_cpp_loop.py --outtype q8_0 --rounds 5
    python bench/llama_cpp_loop.py --outtype q8_0 --rounds 5 --overhead   # + ms a token outside llama_decode
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
import decode_speed as ds  # noqa: E402

from lmforge.models.gguf_export import cached_gguf  # noqa: E402
from lmforge.models.resolve import locate_packaged  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outtype", choices=("f32", "q8_0"), default="f32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--overhead", action="store_true", help="also time llama_decode inside lmforge's loop: the ms "
                        "a token lmforge spends outside it (rules, choice, bookkeeping)")
    parser.add_argument("--prefix-cache", action="store_true", help="both sides keep the prompt's KV between runs "
                        "(only its last token is read again); default: the prompt is read whole every run")
    args = parser.parse_args()
    folder = locate_packaged("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": ds.PROMPTS[0]}], add_generation_prompt=True,
                                         tokenize=False)
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"]]
    weights = {"f32": "fp32", "q8_0": "int8"}[args.outtype]
    peers = {"llama.cpp's own loop": ds.llama_cpp_runner(str(cached_gguf(Path(folder), args.outtype)), prompts,
                                                         tokenizer, args.tokens, args.prefix_cache),
             "lmforge on llama.cpp": ds.lmforge_runner(model, tokenizer, prompts, args.tokens, 1, True, weights=weights,
                                                       engine="llama.cpp", prefix_cache=args.prefix_cache)}
    for run in peers.values():
        run()  # warm-up (and the GGUF converted once)
    speeds: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.rounds):
        for name, run in peers.items():
            started = time.perf_counter()
            run()
            speeds[name].append(args.tokens / (time.perf_counter() - started))
            time.sleep(0.5)
    base = statistics.median(speeds["llama.cpp's own loop"])
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"{args.outtype} {name}: {median:.1f} tok/s (min {min(values):.1f}, max {max(values):.1f}) "
              f"{median / base:.3f}×")
    if args.overhead:
        outside = outside_decode_ms(peers["lmforge on llama.cpp"], args.tokens, args.rounds)
        print(f"{args.outtype} lmforge outside llama_decode: {statistics.median(outside):.3f} ms a token "
              f"(min {min(outside):.3f}, max {max(outside):.3f})")


def outside_decode_ms(run, tokens: int, rounds: int) -> list[float]:
    """Per run of `run`: the ms a generated token spends outside `llama_decode` (its calls timed in place)."""
    import llama_cpp

    decode, spent = llama_cpp.llama_decode, [0.0]

    def timed(*args):
        started = time.perf_counter()
        status = decode(*args)
        spent[0] += time.perf_counter() - started
        return status
    llama_cpp.llama_decode = timed
    try:
        found = []
        for _ in range(rounds):
            spent[0] = 0.0
            started = time.perf_counter()
            run()
            found.append(1000 * (time.perf_counter() - started - spent[0]) / tokens)
        return found
    finally:
        llama_cpp.llama_decode = decode


if __name__ == "__main__":
    main()
