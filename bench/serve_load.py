"""Serving load: concurrent clients against `lmforge serve`'s continuous batching and a one-request-at-a-time
baseline of the same model (the same server with --max-batch 1), in one run.

SmolLM2-135M-Instruct, fixed prompts, exactly --tokens completion tokens per request (lmforge's
min_new_tokens), greedy; each client sends --requests requests one after another over HTTP. Reports
throughput (completion tokens/s), its ratio to the baseline, p50/p99 latency and failed requests.

    python bench/serve_load.py --clients 16,32 --requests 2 --tokens 32
    python bench/serve_load.py --clients 16 --requests 2 --tokens 32 --mixed
    python bench/serve_load.py --clients 16 --requests 2 --tokens 32 --llama-cpp   # + llama-cpp-python's server

`--llama-cpp` adds `lmforge serve --engine llama.cpp` (continuous batching, llama.cpp running the forward passes)
and, as its peer, llama-cpp-python's OpenAI server (`python -m llama_cpp.server`, extra `server`) on the same f32
and q8_0 GGUFs, in its own process with the same threads; it answers one request at a time (it has no parallel
slots). Its requests forbid EOS through logit_bias (it has no min_new_tokens).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
import uvicorn

from lmforge.models.gguf_export import OUTTYPE_OF_WEIGHTS, cached_gguf
from lmforge.models.packaged import locate_packaged
from lmforge.recipes.served_model import served_model
from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions

PROMPTS = ["Write a haiku about the sea.", "Give me a tip for learning to cook.", "Why do leaves change colour?",
           "Describe a busy market.", "What makes a good friend?", "Explain rain to a child.",
           "Name three uses for a brick.", "Tell me about the moon."]


def start(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def llama_cpp_server(gguf: str, threads: int) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI server on `gguf`, started and answering; (process, base url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "smollm2",
                                "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads),
                                "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("llama-cpp-python's server did not start (pip install 'llama-cpp-python[server]')")


def load(url: str, model: str | list[str], clients: int, requests: int, tokens: int, mixed: bool = False,
         eos_id: int | None = None) -> dict:
    """Every client's requests in turn; throughput, latencies and failures. `mixed`: request lengths cycle
    through tokens/4, tokens/2, tokens and 2 × tokens (a short answer should not wait for a long one). `eos_id`:
    a server without min_new_tokens, whose requests forbid that token instead. `model`, a list: request n of
    client i names model (i + n) mod its length (several adapters of one server)."""
    models = [model] if isinstance(model, str) else model
    latencies: list[float] = []
    failures, produced = [0], [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=600) as http:
            for n in range(requests):
                length = max(1, int(tokens * (0.25, 0.5, 1, 2)[(index + n) % 4])) if mixed else tokens
                body = {"model": models[(index + n) % len(models)],
                        "messages": [{"role": "user", "content": PROMPTS[(index + n) % len(PROMPTS)]}],
                        "max_tokens": length, "temperature": 0}
                body |= {"lmforge": {"min_new_tokens": length}} if eos_id is None else {"logit_bias": {str(eos_id): -100}}
                started = time.perf_counter()
                response = http.post(url + "/chat/completions", json=body)
                seconds = time.perf_counter() - started
                with lock:
                    if response.status_code != 200:
                        failures[0] += 1
                        continue
                    latencies.append(seconds)
                    produced[0] += response.json()["usage"]["completion_tokens"]
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"throughput": produced[0] / wall, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], "failed": failures[0],
            "tokens": produced[0], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="16,32")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--tokens", type=int, default=32, help="completion tokens per request")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--mixed", action="store_true", help="lengths cycle through tokens × 0.25, 0.5, 1, 2")
    parser.add_argument("--llama-cpp", action="store_true", help="add lmforge serve --engine llama.cpp and, as its peer, "
                        "llama-cpp-python's server, on f32 and q8_0 GGUFs")
    args = parser.parse_args()
    served = served_model("smollm2-135m-instruct")
    on_llama = {OUTTYPE_OF_WEIGHTS[weights]: served_model("smollm2-135m-instruct", weights=weights, engine="llama.cpp")
                for weights in ("fp32", "int8")} if args.llama_cpp else {}

    def serve_and_load(model, max_batch: int, clients: int) -> dict:
        """`model` served in this process with continuous batches of `max_batch`, loaded by `clients` clients."""
        server, url = start(create_app(model, ServeOptions(max_batch=max_batch, max_queue=clients * 2)))
        try:
            return load(url, model.name, clients, args.requests, args.tokens, args.mixed)
        finally:
            server.should_exit = True
            time.sleep(0.5)
    print("| clients | server | tokens/s | vs one-at-a-time | p50 latency (s) | p99 latency (s) | failed |")
    print("|---|---|---|---|---|---|---|")
    for clients in (int(c) for c in args.clients.split(",")):
        results = {label: serve_and_load(served, batch, clients)
                   for label, batch in (("one at a time", 1), (f"continuous (max {args.max_batch})", args.max_batch))}
        for outtype, model in on_llama.items():
            results[f"continuous on llama.cpp {outtype} (max {args.max_batch})"] = serve_and_load(model, args.max_batch,
                                                                                                  clients)
        if args.llama_cpp:
            import torch

            eos = served.tokenizer.convert_tokens_to_ids("<|im_end|>")
            for outtype in on_llama:  # the same GGUFs
                process, url = llama_cpp_server(str(cached_gguf(locate_packaged("smollm2-135m-instruct"), outtype)),
                                                torch.get_num_threads())
                try:
                    results[f"llama-cpp-python server {outtype}"] = load(url, "smollm2", clients, args.requests,
                                                                         args.tokens, args.mixed, eos)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        base = results["one at a time"]["throughput"]
        for label, r in results.items():
            print(f"| {clients} | {label} | {r['throughput']:.1f} | {r['throughput'] / base:.2f}× | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['failed']} |", flush=True)


if __name__ == "__main__":
    main()
