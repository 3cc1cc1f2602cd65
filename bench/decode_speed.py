"""Decoding speed: HF `generate`, lmforge's engine and (when installed) CTranslate2, side by side.

SmolLM2-135M-Instruct (the packaged weights), chat prompts, exactly --new-tokens new tokens
(min = max, so every peer does the same work) — except the `lookup` mode: prompts that ask the
model to copy a text with its typos fixed, decoded until EOS by greedy and by prompt-lookup
speculative decoding (HF's and ours) — and the `weights` mode: lmforge decoding with fp32, bf16 and
weight-only int8 weights (plus their perplexity on 300 chatterbot-corpus utterances, against fp32's). Each mode
runs the peers in turn, --runs times;
the table gives tokens/s as min / median / max, the ratio of medians to HF, the share of the
memory-bandwidth roofline (bytes of weights read per decoding step ÷ measured read bandwidth) and
whether the tokens are identical to HF's.

    python bench/decode_speed.py --runs 5
    python bench/decode_speed.py --runs 5 --modes greedy,beam4,batch16,lookup,weights --ctranslate2 --compile
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.data.packaged import chatterbot_topics
from lmforge.decode.engine import pad_prompts
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.models.packaged import locate_packaged
from lmforge.models.precision import decoding_weights

PROMPTS = ["Write a short story about a lighthouse keeper who finds a message in a bottle.",
           "Explain how a bicycle works to a ten-year-old.", "List some ideas for a rainy weekend.",
           "Describe the water cycle.", "What makes a good cup of tea?", "Tell me about the moon landing.",
           "Give me tips for learning to cook.", "Why is the sky blue?"]


COPY_TEXTS = [
    "The comittee met on Tuesday to discus the new budjet, and after a long debate they agreed to fund the libary "
    "repairs, the new playground and a small grant for the local theatre group.",
    "Our train was delayed by fourty minutes becuase of a signal failure near the station, so we missed the begining "
    "of the concert but still enjoyed the second half very much.",
]


def until_eos(rows: list[list[int]], eos: int) -> list[list[int]]:
    return [next((row[:i] for i, t in enumerate(row) if t == eos), row) for row in rows]


def read_bandwidth_gbs(size_mb: int = 1024, device: str = "cpu") -> float:
    """Best-of-5 read bandwidth of a large fp32 sum on `device` (GB/s)."""
    data = torch.ones(size_mb * 2**20 // 4, device=device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        float(data.sum())  # waits for the device
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best / 1e9


def hf_runner(model, tokenizer, prompts: list[list[int]], new_tokens: int, beams: int, exact: bool,
              lookup: bool = False) -> Callable[[], list[list[int]]]:
    ids, mask = pad_prompts(prompts, tokenizer.pad_token_id, left=True)
    ids, mask = ids.to(model.device), mask.to(model.device)
    options = {"min_new_tokens": new_tokens} if exact else {}
    if lookup:
        options["prompt_lookup_num_tokens"] = DecodeParams().prompt_lookup_num_tokens  # the same drafts as lmforge

    def run() -> list[list[int]]:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                             num_beams=beams, pad_token_id=tokenizer.pad_token_id, **options)
        return until_eos(out[:, ids.shape[1]:].tolist(), tokenizer.eos_token_id)
    return run


def lmforge_runner(model, tokenizer, prompts: list[list[int]], new_tokens: int, beams: int, exact: bool,
                   lookup: bool = False, weights: str = "fp32", compiled: bool = False,
                   engine: str = "torch", prefix_cache: bool = False) -> Callable[[], list[list[int]]]:
    knobs: dict = {"min_new_tokens": new_tokens} if exact else {}
    knobs |= {"engine": engine, "prefix_cache": prefix_cache}
    if compiled:
        knobs |= {"cache": "static", "compile": True}
    if weights != "fp32" and engine == "torch":  # convert once, outside the timed runs
        model = decoding_weights(model, weights)
    elif engine != "torch":
        knobs["weights"] = weights
    if beams > 1:
        knobs |= {"strategy": "beam", "num_beams": beams}
    if lookup:
        knobs["strategy"] = "prompt_lookup"
    params = DecodeParams(**knobs)

    def run() -> list[list[int]]:
        return [c[0].tokens for c in generate(model, tokenizer, DecodeRequest(prompts, params, new_tokens,
                                                                              batch_size=len(prompts)))]
    return run


def parent_asks(pipe) -> Iterator[None]:
    """In a worker process: once each time the parent sends "run"; ends on anything else or when the parent is gone."""
    while True:
        try:
            if pipe.recv() != "run":
                return
        except EOFError:  # the parent finished
            return
        yield


def _ctranslate2_worker(pipe, folder: str, tokens: list[list[str]], new_tokens: int, beams: int, quantization: str,
                        threads: int, eos: int) -> None:
    """Holds a CTranslate2 generator in its own process and decodes whenever the parent sends "run"."""
    try:
        import ctranslate2
    except ImportError:
        pipe.send(None)
        return
    target = tempfile.mkdtemp(prefix=f"ct2-{quantization}-")
    ctranslate2.converters.TransformersConverter(folder).convert(target, quantization=quantization, force=True)
    generator = ctranslate2.Generator(target, device="cpu", compute_type=quantization, intra_threads=threads)
    pipe.send("ready")
    for _ in parent_asks(pipe):
        results = generator.generate_batch(tokens, max_length=new_tokens, min_length=new_tokens, beam_size=beams,
                                           include_prompt_in_result=False)
        pipe.send(until_eos([r.sequences_ids[0] for r in results], eos))


def worker_runner(worker: Callable, *args) -> Callable[[], list[list[int]]] | None:
    """`worker(pipe, *args)` in a spawned process that decodes on every "run"; None when it cannot start (its
    package missing). Peers with their own threading runtime stay out of torch's process."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    context.Process(target=worker, daemon=True, args=(child, *args)).start()
    if parent.recv() is None:
        return None

    def run() -> list[list[int]]:
        parent.send("run")
        return parent.recv()
    return run


def ctranslate2_runner(folder: str, prompts: list[list[int]], tokenizer, new_tokens: int, beams: int,
                       quantization: str) -> Callable[[], list[list[int]]] | None:
    """CTranslate2 in a separate process: loaded beside torch, its OpenMP runtime slowed torch's own
    threaded kernels (int8 decoding 42.7 → 25.7 tok/s in one process)."""
    tokens = [tokenizer.convert_ids_to_tokens(p) for p in prompts]
    return worker_runner(_ctranslate2_worker, folder, tokens, new_tokens, beams, quantization, torch.get_num_threads(),
                         tokenizer.eos_token_id)


def _llama_cpp_worker(pipe, gguf: str, prompts: list[list[int]], new_tokens: int, threads: int, eos: int,
                      prefix_cache: bool) -> None:
    """Holds a llama.cpp model (llama-cpp-python) in its own process; greedy, exactly `new_tokens` tokens a prompt
    (EOS suppressed, as HF's min_new_tokens does), whenever the parent sends "run". Without `prefix_cache` every
    prompt is read whole (`reset()`: `generate` otherwise keeps the KV of the tokens it shares with the last one)."""
    try:
        import numpy as np
        from llama_cpp import Llama, LogitsProcessorList
    except ImportError:
        pipe.send(None)
        return
    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)

    def no_eos(ids, logits):
        logits[eos] = -np.inf
        return logits
    pipe.send("ready")
    for _ in parent_asks(pipe):
        rows = []
        for prompt in prompts:
            out: list[int] = []
            if not prefix_cache:
                llm.reset()
            for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True,
                                      logits_processor=LogitsProcessorList([no_eos])):
                out.append(token)
                if len(out) == new_tokens:
                    break
            rows.append(out)
        pipe.send(rows)


def _llama_cpp_batched_worker(pipe, gguf: str, prompts: list[list[int]], new_tokens: int, threads: int, eos: int,
                              prefix_cache: bool, unified: bool = False) -> None:
    """llama.cpp decoding every prompt at once, as its `batched` example does (llama-cpp-python's low-level API:
    one sequence per prompt, each in its own KV stream unless `unified` — the example's default, 7% faster here at
    batch 16 —, one `llama_decode` a step for all rows, greedy with numpy, EOS suppressed); its high-level `Llama`
    decodes one prompt at a time. Every run starts from an empty KV cache."""
    try:
        import ctypes

        import llama_cpp as L
        import numpy as np
    except ImportError:
        pipe.send(None)
        return
    quiet = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda level, text, data: None)
    L.llama_log_set(quiet, ctypes.c_void_p(0))  # llama.cpp reports every load on stderr
    L.llama_backend_init()
    model = L.llama_model_load_from_file(gguf.encode(), L.llama_model_default_params())
    params = L.llama_context_default_params()
    params.n_ctx = len(prompts) * (max(len(p) for p in prompts) + new_tokens) + 64
    params.n_seq_max, params.kv_unified = len(prompts), unified
    params.n_batch = params.n_ubatch = max(512, sum(len(p) for p in prompts))
    params.n_threads = params.n_threads_batch = threads
    context = L.llama_init_from_model(model, params)
    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    batch = L.llama_batch_init(params.n_batch, 0, 1)

    def decode(entries: list[tuple[int, int, int, bool]]) -> np.ndarray:
        for i, (token, position, sequence, wants) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, 1, wants
            batch.seq_id[i][0] = sequence
        batch.n_tokens = len(entries)
        if L.llama_decode(context, batch) != 0:
            raise RuntimeError("llama_decode failed")
        address = ctypes.cast(L.llama_get_logits(context), ctypes.c_void_p).value
        rows = sum(entry[3] for entry in entries)
        return np.frombuffer((ctypes.c_float * (rows * vocab)).from_address(address), dtype=np.float32).reshape(rows, vocab)
    pipe.send("ready")
    for _ in parent_asks(pipe):
        L.llama_memory_clear(L.llama_get_memory(context), True)
        logits = decode([(token, i, row, i == len(prompt) - 1) for row, prompt in enumerate(prompts)
                         for i, token in enumerate(prompt)])
        outputs: list[list[int]] = [[] for _ in prompts]
        for step in range(new_tokens):
            logits[:, eos] = -np.inf
            tokens = logits.argmax(axis=1).tolist()
            for row, token in enumerate(tokens):
                outputs[row].append(token)
            if step + 1 < new_tokens:
                logits = decode([(token, len(prompts[row]) + step, row, True) for row, token in enumerate(tokens)])
        pipe.send(outputs)


def llama_cpp_runner(gguf: str, prompts: list[list[int]], tokenizer, new_tokens: int,
                     prefix_cache: bool = False) -> Callable[[], list[list[int]]] | None:
    """llama.cpp in a separate process (its own threads, as CTranslate2), on a GGUF `lmforge export` wrote; several
    prompts decode together (llama.cpp's batched example), one prompt through llama-cpp-python's `Llama`."""
    worker = _llama_cpp_worker if len(prompts) == 1 else _llama_cpp_batched_worker
    return worker_runner(worker, gguf, prompts, new_tokens, torch.get_num_threads(), tokenizer.eos_token_id,
                         prefix_cache)


def exported_gguf(outtype: str, folder: str) -> str:
    """The packaged SmolLM2 as GGUF (`lmforge export --format gguf`), made once per --outtype in a temp folder."""
    import subprocess
    import sys

    target = tempfile.mkdtemp(prefix=f"gguf-{outtype}-")
    subprocess.run([sys.executable, "-m", "lmforge.cli", "export", folder, "--format", "gguf", "--outtype", outtype,
                    "--output", target], check=True, capture_output=True)
    return f"{target}/model-{outtype}.gguf"


def llama_cpp_perplexity(weights: str, model, tokenizer, texts: list[str]) -> float:
    """Perplexity of the GGUF that decode.engine llama.cpp uses for `weights`, read by llama.cpp itself."""
    from lmforge.decode.llama_cpp_engine import llama_cpp_runtime

    runtime = llama_cpp_runtime(model, weights)
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        if len(ids) < 2:
            continue
        runtime.reserve(cells=len(ids) + 8, sequences=1)
        sequence = runtime.claim(1)
        logits = torch.from_numpy(runtime.decode([(token, i, sequence[0], True) for i, token in enumerate(ids)]).copy())
        runtime.release(sequence)
        total += float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum"))
        count += len(ids) - 1
    return math.exp(total / count)


def perplexity(model, tokenizer, texts: list[str]) -> float:
    """exp(mean negative log-likelihood per token) of `texts`, one at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            if ids.shape[1] < 2:
                continue
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return math.exp(total / count)


def measure(run: Callable[[], list[list[int]]]) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    tokens = run()
    return time.perf_counter() - start, tokens


def check_invariance(model, tokenizer, prompts: list[list[int]], new_tokens: int) -> None:
    """Greedy outputs of each prompt alone vs in one left-padded batch, for HF and lmforge."""
    lengths = sorted(len(p) for p in prompts)
    print(f"{len(prompts)} prompts of {lengths[0]}–{lengths[-1]} tokens, {new_tokens} new tokens, fp32 greedy")
    for name, runner in (("HF generate", lambda ps: hf_runner(model, tokenizer, ps, new_tokens, 1, exact=True)()),
                         ("lmforge", lambda ps: lmforge_runner(model, tokenizer, ps, new_tokens, 1, exact=True)())):
        batched = runner(prompts)
        alone = [runner([p])[0] for p in prompts]
        same = sum(a == b for a, b in zip(alone, batched, strict=True))
        first = [next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
                 for a, b in zip(alone, batched, strict=True)]
        print(f"{name}: {same}/{len(prompts)} identical at batch 1 and batch {len(prompts)}; "
              f"first differing position per prompt: {first}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--modes", default="greedy,beam4,batch16,lookup",
                        help="greedy, beamN, batchN (greedy over N prompts), lookup (copying prompts, until EOS)")
    parser.add_argument("--ctranslate2", action="store_true", help="add CTranslate2 fp32 and int8 as peers (if installed)")
    parser.add_argument("--compile", action="store_true", help="weights mode: add int8 with a static cache and "
                                                               "torch.compile (compiling takes minutes, before the timing)")
    parser.add_argument("--invariance", action="store_true", help="only check: are greedy outputs the same at batch 1 "
                                                                  "and batch 8 (mixed prompt lengths)?")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the model and HF's inputs go there)")
    parser.add_argument("--llama-cpp", action="store_true", help="every mode but weights: add lmforge with decode.engine "
                        "llama.cpp (f32 and q8_0 GGUF); greedy mode: add llama.cpp (llama-cpp-python, own "
                                                                 "process) on f32 and q8_0 GGUF exports as peers")
    parser.add_argument("--prefix-cache", action="store_true", help="with --llama-cpp: both llama.cpp sides keep the "
                        "KV of the prompt tokens shared with the previous prompt (llama-cpp-python's default, lmforge's "
                        "decode.prefix_cache); without it every prompt is read whole, prefill included")
    args = parser.parse_args()
    folder = str(locate_packaged("smollm2-135m-instruct"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval().to(args.device)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = read_bandwidth_gbs(device=args.device)
    roofline = bandwidth * 1e9 / weight_bytes  # decoding steps per second if only weight reads counted
    print(f"threads {torch.get_num_threads()}, weights {weight_bytes / 1e6:.0f} MB, read bandwidth {bandwidth:.1f} GB/s, "
          f"roofline {roofline:.1f} steps/s")
    def chat(texts: list[str]) -> list[list[int]]:
        rendered = [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                                  tokenize=False) for t in texts]
        return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
    encoded = chat(PROMPTS)
    copying = chat([f"Rewrite this text with the spelling mistakes corrected:\n\n{t}" for t in COPY_TEXTS])
    if args.invariance:
        check_invariance(model, tokenizer, encoded, args.new_tokens)
        return
    print("| mode | peer | tok/s min | median | max | × HF | roofline share | tokens = HF |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        beams = int(mode[4:]) if mode.startswith("beam") else 1
        rows = int(mode[5:]) if mode.startswith("batch") else 1
        if mode == "weights":
            prompts = encoded[:1]
            peers = {"HF generate": hf_runner(model, tokenizer, prompts, args.new_tokens, 1, exact=True)}
            for kind in ("fp32", "bf16", "int8"):
                peers[f"lmforge {kind}"] = lmforge_runner(model, tokenizer, prompts, args.new_tokens, 1, True, weights=kind)
            if args.compile:
                peers["lmforge int8, static cache, compiled"] = lmforge_runner(model, tokenizer, prompts, args.new_tokens, 1,
                                                                             True, weights="int8", compiled=True)
        elif mode == "lookup":
            peers = {"HF generate": hf_runner(model, tokenizer, copying[:1], 2 * args.new_tokens, 1, exact=False),
                     "HF prompt lookup": hf_runner(model, tokenizer, copying[:1], 2 * args.new_tokens, 1, False, True),
                     "lmforge greedy": lmforge_runner(model, tokenizer, copying[:1], 2 * args.new_tokens, 1, False),
                     "lmforge prompt_lookup": lmforge_runner(model, tokenizer, copying[:1], 2 * args.new_tokens, 1, False, True)}
        else:
            prompts = (encoded * rows)[:rows]
            peers = {"HF generate": hf_runner(model, tokenizer, prompts, args.new_tokens, beams, exact=True),
                     "lmforge": lmforge_runner(model, tokenizer, prompts, args.new_tokens, beams, exact=True)}
        if args.llama_cpp and mode != "weights":  # lmforge's engine with llama.cpp running the forward passes
            for weights, outtype in (("fp32", "f32"), ("int8", "q8_0")):
                copy = mode == "lookup"
                peers[f"lmforge on llama.cpp {outtype}"] = lmforge_runner(
                    model, tokenizer, copying[:1] if copy else prompts, 2 * args.new_tokens if copy else args.new_tokens,
                    beams, not copy, lookup=copy, weights=weights, engine="llama.cpp", prefix_cache=args.prefix_cache)
        if args.llama_cpp and (mode == "greedy" or mode.startswith("batch")):
            for outtype in ("f32", "q8_0"):
                runner = llama_cpp_runner(exported_gguf(outtype, folder), prompts, tokenizer, args.new_tokens,
                                          args.prefix_cache)
                if runner is not None:
                    peers[f"llama.cpp {outtype}"] = runner
        if args.ctranslate2 and mode != "lookup":
            for quantization in ("int8",) if mode == "weights" else ("float32", "int8"):
                runner = ctranslate2_runner(folder, prompts, tokenizer, args.new_tokens, beams, quantization)
                if runner is not None:
                    peers[f"CTranslate2 {quantization}"] = runner
        times: dict[str, list[float]] = {name: [] for name in peers}
        outputs: dict[str, list[list[int]]] = {}
        for name, run in peers.items():  # warm-up, and the tokens to compare
            outputs[name] = measure(run)[1]
        for _ in range(args.runs):
            for name, run in peers.items():
                times[name].append(measure(run)[0])
                time.sleep(1.0)  # CTranslate2's OpenMP threads spin after a call: let them sleep before the next peer
        base = statistics.median(times["HF generate"])
        for name in peers:
            produced = sum(len(row) for row in outputs[name])
            speeds = sorted(produced / t for t in times[name])
            median = produced / statistics.median(times[name])
            share = median / rows / roofline  # decoding steps/s against the roofline
            same = outputs[name] == outputs["HF generate"]
            print(f"| {mode} | {name} | {speeds[0]:.1f} | {median:.1f} | {speeds[-1]:.1f} | "
                  f"{base / statistics.median(times[name]):.2f} | {share:.0%} | {'yes' if same else 'NO'} |", flush=True)
        if args.llama_cpp and mode == "greedy":
            texts = [row["text"] for row in chatterbot_topics()][:300]
            reference = perplexity(model, tokenizer, texts)
            for weights, outtype in (("fp32", "f32"), ("int8", "q8_0")):
                value = llama_cpp_perplexity(weights, model, tokenizer, texts)
                print(f"perplexity on {len(texts)} chatterbot utterances: torch fp32 {reference:.3f}, llama.cpp {outtype} "
                      f"{value:.3f} ({100 * (value / reference - 1):+.2f}%)", flush=True)
        if mode == "weights":
            texts = [row["text"] for row in chatterbot_topics()][:300]
            reference = perplexity(model, tokenizer, texts)
            for kind in ("bf16", "int8"):
                value = perplexity(decoding_weights(model, kind), tokenizer, texts)
                print(f"perplexity on {len(texts)} chatterbot utterances: fp32 {reference:.3f}, {kind} {value:.3f} "
                      f"({100 * (value / reference - 1):+.2f}%)", flush=True)


if __name__ == "__main__":
    main()
