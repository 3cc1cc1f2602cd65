"""Which llama.cpp lmforge installs: a prebuilt manylinux wheel beside the once-per-machine native build.

Each side decodes the same GGUF (SmolLM2-135M-Instruct, f32 unless --outtype) greedily, batch 1 — the
wheel (xllamacpp: llama.cpp's server as a Python extension, the one prebuilt manylinux CPU build on PyPI that
loads on glibc 2.36) through its own completions call, the native build through lmforge's llama.cpp engine —
`--tokens` new tokens for each of the prompts, after one warm-up prompt; each in its own process. Prints tokens per second, and the ISA the wheel's
llama.cpp was compiled for (AVX-512 instructions counted with objdump).

    python bench/llama_cpp_builds.py --wheel-python /tmp/xlvenv/bin/python   # a venv with xllamacpp
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
    if binding == "llama-cpp-python":  # lmforge's llama.cpp engine (llama-cpp-python's ctypes API) on that GGUF
        from lmforge.decode.generate import generate
        from lmforge.decode.request import DecodeRequest
        from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS
        from lmforge.recipes.generate import open_generator

        generator = open_generator("smollm2-135m-instruct")
        weights = {v: k for k, v in OUTTYPE_OF_WEIGHTS.items()}[Path(gguf).stem.removeprefix("model-")]
        params = generator.decode.model_copy(update={"engine": "llama.cpp", "weights": weights,
                                                     "min_new_tokens": tokens})

        def run(prompt: str) -> int:
            ids = generator.tokenizer(prompt)["input_ids"]
            return len(generate(generator.model, generator.tokenizer, DecodeRequest([ids], params, tokens))[0][0].tokens)
    else:  # xllamacpp: llama.cpp's server as a Python extension, one request at a time
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path, params.n_ctx, params.n_predict = gguf, 512, tokens
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        server = xllamacpp.Server(params)

        def run(prompt: str) -> int:
            out = server.handle_completions({"prompt": prompt, "max_tokens": tokens, "temperature": 0,
                                             "logit_bias": [[2, False]], "ignore_eos": True})
            return out["usage"]["completion_tokens"]
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
    parser.add_argument("--wheel-python", required=True, help="a python with xllamacpp installed")
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
    for binding, python in (("xllamacpp", args.wheel_python), ("llama-cpp-python", sys.executable)):
        out = subprocess.run([python, __file__, "--wheel-python", args.wheel_python, "--tokens", str(args.tokens),
                              "--threads", str(args.threads), "--child", binding, gguf], capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{binding}: failed\n{out.stderr[-2000:]}")
            continue
        results[binding] = json.loads(line[7:])
    wheel_cpu = subprocess.run([args.wheel_python, "-c", "import xllamacpp, pathlib; print(next(pathlib.Path("
                                "xllamacpp.__file__).parent.glob('xllamacpp*.so')))"],
                               capture_output=True, text=True).stdout.strip()
    import llama_cpp

    native_cpu = next(Path(llama_cpp.__file__).parent.joinpath("lib").glob("libggml-cpu.so*"))
    print(f"SmolLM2-135M-Instruct {args.outtype}, greedy, batch 1, {args.tokens} new tokens × {len(PROMPTS)} prompts, "
          f"{args.threads} threads\n")
    print("| llama.cpp | AVX-512 instructions in ggml-cpu | tok/s |")
    print("|---|---|---|")
    for binding, library in (("xllamacpp", Path(wheel_cpu)), ("llama-cpp-python", native_cpu.resolve())):
        if binding in results:
            r = results[binding]
            print(f"| {binding} ({library.name}) | {avx512_instructions(library)} | {r['tokens'] / r['seconds']:.1f} |")
    if len(results) == 2:
        speed = {b: r["tokens"] / r["seconds"] for b, r in results.items()}
        print(f"\nnative build / prebuilt wheel: {speed['llama-cpp-python'] / speed['xllamacpp']:.2f}×")


if __name__ == "__main__":
    main()
