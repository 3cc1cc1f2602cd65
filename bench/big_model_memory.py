"""Memory of a ~1B-parameter model on this CPU: peak and steady RSS per process of `lmforge train` for LoRA on a
bf16 base with and without gradient checkpointing, QLoRA (an nf4 base through bitsandbytes), and full fine-tuning in one process vs FSDP over two.

No ~1B weights exist offline, so the model is a Llama-architecture network built from a config (TinyLlama-1.1B's
shape with SmolLM2's 49,152-token vocabulary: 1.1B parameters) with random weights, saved once to --folder.
Continued pre-training (causal LM) on 200 short lines, batch 1, max_length 64, bf16 autocast; each run is stopped
after --steps optimizer steps. RSS is sampled every 0.2 s per process (the launcher excluded); "steady" is the
RSS when the last step was logged. Two FSDP processes with AdamW need more than this 23 GiB machine holds
(every process loads the whole fp32 model before sharding it), so the FSDP comparison uses SGD with momentum
(one state tensor per parameter; Adafactor cannot step sharded tensors).

    python bench/big_model_memory.py --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BASE = ["task=language-modeling", "data.max_length=64", "data.validation_fraction=0", "train.batch_size=1",
        "train.epochs=1", "train.log_every_steps=1", "train.tensorboard=false", "train.precision=bf16",
        "train.save_every_minutes=null", "train.progress_every_seconds=null"]
RUNS = {
    "LoRA r=8 on a bf16 base": ["tuning.peft.method=lora", "model.dtype=bf16"],
    "LoRA r=8 on a bf16 base + gradient checkpointing": ["tuning.peft.method=lora", "model.dtype=bf16",
                                                         "train.gradient_checkpointing=true"],
    "QLoRA r=8 on an nf4 base (bitsandbytes)": ["tuning.peft.method=lora", "model.quantization=nf4"],
    "QLoRA r=8 on an nf4 base + gradient checkpointing": ["tuning.peft.method=lora", "model.quantization=nf4",
                                                          "train.gradient_checkpointing=true"],
    "full fine-tuning (AdamW) in 1 process": [],
    "full fine-tuning (SGD with momentum) in 1 process": ["train.optimizer=sgd"],
    "full fine-tuning (SGD with momentum) with FSDP over 2 processes": ["train.optimizer=sgd", "train.fsdp=true"],
}


def build(folder: Path) -> int:
    """The random ~1.1B Llama (saved once) and its tokenizer; its parameter count."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lmforge.models.packaged import locate_packaged

    config = LlamaConfig(vocab_size=49152, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=False)
    if not (folder / "model.safetensors.index.json").is_file() and not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(locate_packaged("smollm2-135m-instruct")).save_pretrained(folder)
        return sum(p.numel() for p in model.parameters())
    from accelerate import init_empty_weights

    with init_empty_weights():
        return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


def workers(process: psutil.Process) -> list[psutil.Process]:
    """The processes that train: the command itself, or the children `accelerate launch` started."""
    children = []
    for child in process.children(recursive=True):
        try:
            if "lmforge.cli" in " ".join(child.cmdline()):
                children.append(child)
        except psutil.Error:  # exited meanwhile
            continue
    return children or [process]


def measure(command: list[str], run_dir: Path, steps: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    process = psutil.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    anon: dict[int, int] = {}  # RSS less file-backed pages (a memory-mapped checkpoint being read counts in RSS)
    steady: dict[int, int] = {}
    log = run_dir / "metrics.jsonl"
    while process.poll() is None:
        for worker in workers(process):
            try:
                memory = worker.memory_info()
            except psutil.Error:
                continue
            rss = memory.rss
            peaks[worker.pid] = max(peaks.get(worker.pid, 0), rss)
            anon[worker.pid] = max(anon.get(worker.pid, 0), rss - memory.shared)
            steady[worker.pid] = rss
        logged = log.read_text(encoding="utf-8").count('"train_loss"') if log.is_file() else 0
        if logged >= steps:
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"the run ended before {steps} steps:\n{process.stderr.read()[-3000:]}")
    seconds = time.perf_counter() - started
    for child in process.children(recursive=True):
        child.kill()
    process.kill()
    process.wait()
    return {"processes": len(peaks), "peak_gb": round(max(peaks.values()) / 2**30, 2),
            "peak_anon_gb": round(max(anon.values()) / 2**30, 2),
            "steady_gb": round(max(steady.values()) / 2**30, 2), "seconds": round(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "lmforge-llama-1b")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--runs", default=",".join(RUNS), help="names separated by commas, from: " + "; ".join(RUNS))
    args = parser.parse_args()
    parameters = build(args.folder)
    print(f"model: {parameters / 1e9:.2f}B parameters (random, from a config) in {args.folder}")
    with tempfile.TemporaryDirectory(prefix="big-model-") as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("".join(f"line {n}: the quick brown fox jumps over the lazy dog, again and again.\n"
                                for n in range(200)), encoding="utf-8")
        print("| run | processes | peak RSS GB / process | peak anonymous GB / process | steady RSS GB / process | "
              "seconds to step |")
        print("|---|---|---|---|---|---|")
        for name in args.runs.split(","):
            run_dir = Path(tmp) / f"run-{len(os.listdir(tmp))}"
            train = ["-m", "lmforge.cli", "train", *BASE, f"model={args.folder}", f"data.train={data}",
                     f"train.output_dir={run_dir}", *RUNS[name]]
            if "train.fsdp=true" in RUNS[name]:
                command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *train]
            else:
                command = [sys.executable, *train]
            cores = os.cpu_count() or 1
            result = measure(command, run_dir, args.steps, max(1, cores // 2) if "train.fsdp=true" in RUNS[name] else cores)
            print(f"| {name} | {result['processes']} | {result['peak_gb']} | {result['peak_anon_gb']} | "
                  f"{result['steady_gb']} | {result['seconds']} |", flush=True)
            print(json.dumps({"run": name, **result}), file=sys.stderr)


if __name__ == "__main__":
    main()
