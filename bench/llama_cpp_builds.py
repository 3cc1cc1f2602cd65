"""Which llama.cpp lmforge installs: a prebuilt manylinux wheel beside the once-per-machine native build.

Each side decodes the same GGUF (SmolLM2-135M-Instruct, f32 unless --outtype) greedily through its own
high-level `Llama` loop, batch 1, `--tokens` new tokens for each of the prompts, after one warm-up prompt; each
in its own process (run with the venv that holds it). Prints tokens per second, and the ISA the wheel's
ggml-cpu library was compiled for (AVX-512 instructions counted with objdump).

    python bench/llama_cpp_builds.py --sync-python /tmp/syncvenv/bin/python   # llama-cpp-py-sync's wheel
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = ["Why is the sky blue?", "Write a short poem about the sea.", "Explain what a CPU cache is.",
           "Give three tips for learning a language."]


def child(binding: str, gguf: str, tokens: int, threads: int) -> dict:
    if binding == "llama-cpp-python":
        from llama_cpp import Llama

        llama = Llama(gguf, n_ctx=512, n_threads=threads, n_batch=512, verbose=False)

        def run(prompt: str) -> int:
            out = llama(prompt, max_tokens=tokens, temperature=0.0, top_k=1, repeat_penalty=1.0)
            return out["usage"]["completion_tokens"]
    else:
        from llama_cpp_py_sync import Llama

        llama = Llama(gguf, n_ctx=512, n_threads=threads, n_batch=512, verbose=False)

        def run(prompt: str) -> int:
            text = llama.generate(prompt, max_tokens=tokens, temperature=0.0, top_k=1, repeat_penalty=1.0, min_p=0.0)
            return len(llama.tokenize(text, add_bos=False))
    run("Hello")
    made, started = 0, time.perf_counter()
    for prompt in PROMPTS:
        made += run(prompt)
    return {"tokens": made, "seconds": time.perf_counter() - started}


def avx512_instructions(library: Path) -> int:
    listing = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True).stdout
    return sum("zmm" in line for line in listing.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-python", required=True, help="a python with llama-cpp-py-sync installed")
    parser.add_argument("--outtype", default="f32")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], args.child[1], args.tokens, args.threads)))
        return
    from lmforge.models.gguf_export import cached_gguf
    from lmforge.models.resolve import resolve_model

    gguf = str(cached_gguf(Path(resolve_model("smollm2-135m-instruct")), args.outtype))
    results = {}
    for binding, python in (("llama-cpp-py-sync", args.sync_python), ("llama-cpp-python", sys.executable)):
        out = subprocess.run([python, __file__, "--sync-python", args.sync_python, "--tokens", str(args.tokens),
                              "--threads", str(args.threads), "--child", binding, gguf], capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{binding}: failed\n{out.stderr[-2000:]}")
            continue
        results[binding] = json.loads(line[7:])
    wheel_cpu = subprocess.run([args.sync_python, "-c", "import llama_cpp_py_sync, pathlib; print(pathlib.Path("
                                "llama_cpp_py_sync.__file__).parent / 'libggml-cpu.so.0')"],
                               capture_output=True, text=True).stdout.strip()
    import llama_cpp

    native_cpu = next(Path(llama_cpp.__file__).parent.joinpath("lib").glob("libggml-cpu.so*"))
    print(f"SmolLM2-135M-Instruct {args.outtype}, greedy, batch 1, {args.tokens} new tokens × {len(PROMPTS)} prompts, "
          f"{args.threads} threads\n")
    print("| llama.cpp | AVX-512 instructions in ggml-cpu | tok/s |")
    print("|---|---|---|")
    for binding, library in (("llama-cpp-py-sync", Path(wheel_cpu)), ("llama-cpp-python", native_cpu.resolve())):
        if binding in results:
            r = results[binding]
            print(f"| {binding} ({library.name}) | {avx512_instructions(library)} | {r['tokens'] / r['seconds']:.1f} |")
    if len(results) == 2:
        speed = {b: r["tokens"] / r["seconds"] for b, r in results.items()}
        print(f"\nnative build / prebuilt wheel: {speed['llama-cpp-python'] / speed['llama-cpp-py-sync']:.2f}×")


if __name__ == "__main__":
    main()
