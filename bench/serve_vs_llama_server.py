"""`lmforge serve` with no engine flag beside llama.cpp's C++ `llama-server --parallel N`, and `lmforge generate` at
batch 1, on SmolLM2-135M-Instruct at f32 and q8_0 (lmforge's `--weights int8`).

Each server runs in its own process, one at a time, with the same threads; both decode the same GGUF (lmforge
converts and caches it; llama-server reads that file), greedy, exactly --tokens tokens a request (EOS forbidden
through logit_bias on both sides). Reported: tokens/s at 1 client and at --clients clients (each sending
--requests requests in turn), p50/p95 latency, failures, the server's RSS after the load (VmRSS; `lmforge serve
MODEL` on llama.cpp imports no torch: serve/light_model.py) and its peak (VmHWM), and lmforge's ratios.
llama-server is the one scripts/llama_cpp.sh built from the same llama.cpp; weight repacking is off on both
sides (llama.cpp 0.3.36's repacked q8_0 crashes on AMX CPUs; see docs/llama_cpp.md).

    python bench/serve_vs_llama_server.py --clients 16 --requests 2 --tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import PROMPTS, load  # noqa: E402

MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen) -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not start")


def rss_mb(pid: int, field: str) -> float:
    """A /proc/PID/status memory field in MB: VmHWM (peak RSS), VmRSS (now)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 1024


def measure(command: list[str], url: str, name: str, clients: list[int], requests: int, tokens: int,
            eos_id: int) -> dict:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, process)
        load(url, name, 1, 1, 4, eos_id=eos_id)  # warm-up
        found = {n: load(url, name, n, requests, tokens, eos_id=eos_id) for n in clients}
        found["rss"], found["peak"] = rss_mb(process.pid, "VmRSS"), rss_mb(process.pid, "VmHWM")
        return found
    finally:
        process.terminate()
        process.wait(timeout=60)


def generate_b1(weights: str, tokens: int) -> float:
    """tok/s of `lmforge generate` at batch 1 (no engine flag), in this process, after a warm-up."""
    from lmforge.decode.generate import generate
    from lmforge.decode.request import DecodeRequest
    from lmforge.recipes.generate import open_generator

    generator = open_generator(MODEL)
    params = generator.decode.model_copy(update={"weights": weights, "min_new_tokens": tokens})
    chats = [generator.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                     tokenize=False) for p in PROMPTS[:4]]
    prompts = [generator.tokenizer(chat, add_special_tokens=False)["input_ids"] for chat in chats]
    generate(generator.model, generator.tokenizer, DecodeRequest([prompts[0]], params, 4))
    started = time.perf_counter()
    for prompt in prompts:
        generate(generator.model, generator.tokenizer, DecodeRequest([prompt], params, tokens))
    return tokens * len(prompts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--generate-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_child:
        print("RESULT", generate_b1(args.generate_child, args.tokens))
        return
    import llama_cpp

    from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS, cached_gguf
    from lmforge.models.resolve import resolve_model

    server_binary = Path(llama_cpp.__file__).parent.joinpath("lib", "libllama.so").resolve().parent / "llama-server"
    eos_id = 2  # <|im_end|> in SmolLM2's vocabulary
    clients = [1, args.clients]
    rows = []
    for weights in ("fp32", "int8"):
        outtype = OUTTYPE_OF_WEIGHTS[weights]
        gguf = cached_gguf(Path(resolve_model(MODEL)), outtype)
        port = free_port()
        lmforge = measure([sys.executable, "-m", "lmforge.cli", "serve", MODEL, "--port", str(port), "--weights", weights,
                           "--max-batch", str(args.clients)], f"http://127.0.0.1:{port}/v1", MODEL, clients,
                          args.requests, args.tokens, eos_id)
        port = free_port()
        peer = measure([str(server_binary), "-m", str(gguf), "--port", str(port), "--parallel", str(args.clients),
                        "-c", str(args.clients * 512), "-t", str(args.threads), "--no-repack", "--alias", "smollm2"],
                       f"http://127.0.0.1:{port}/v1", "smollm2", clients, args.requests, args.tokens, eos_id)
        child = subprocess.run([sys.executable, __file__, "--generate-child", weights, "--tokens", str(args.tokens)],
                               capture_output=True, text=True)
        b1 = float(next(line.split()[1] for line in child.stdout.splitlines() if line.startswith("RESULT")))
        rows.append((outtype, lmforge, peer, b1))
    print(f"\n{MODEL}, greedy, {args.tokens} tokens a request, {args.requests} requests a client, "
          f"{args.threads} threads\n")
    print("| weights | server | clients | tok/s | vs llama-server | p50 s | p95 s | failed | RSS MB (vs llama-server) "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for outtype, lmforge, peer, _ in rows:
        for label, found in (("llama-server", peer), ("lmforge serve", lmforge)):
            for n in clients:
                r = found[n]
                print(f"| {outtype} | {label} | {n} | {r['throughput']:.1f} | "
                      f"{r['throughput'] / peer[n]['throughput']:.2f}× | {r['p50']:.2f} | {r['p95']:.2f} | "
                      f"{r['failed']} | {found['rss']:.0f} ({found['rss'] / peer['rss']:.2f}×) | {found['peak']:.0f} |")
    print("\n| weights | lmforge generate b1 tok/s | llama-server 1 client tok/s | ratio |")
    print("|---|---|---|---|")
    for outtype, _, peer, b1 in rows:
        print(f"| {outtype} | {b1:.1f} | {peer[1]['throughput']:.1f} | {b1 / peer[1]['throughput']:.2f}× |")
    print(json.dumps({o: {"lmforge_rss": lm["rss"], "llama_server_rss": p["rss"], "lmforge_peak": lm["peak"],
                          "llama_server_peak": p["peak"]} for o, lm, p, _ in rows}))


if __name__ == "__main__":
    main()
