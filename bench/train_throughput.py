"""Training throughput: lmforge's loop vs HF Trainer vs a plain PyTorch loop, same model, data and batch size.

Each configuration runs in its own process (so peak memory is its own) over the same SST-2 sentences
(../shared/data/sst2; synthetic sentences of SST-2-like length when absent) and prints samples/s,
peak RSS and ratios to the HF Trainer fp32 baselines.

    python bench/train_throughput.py --samples 2048 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SST2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2" / "train.tsv"
MAX_LENGTH = 128  # run_glue.py's default max_seq_length; "static" padding pads every batch to it

CONFIGS = {
    "trainer-fp32-static": "HF Trainer, fp32, every batch padded to 128 (run_glue.py defaults)",
    "trainer-fp32-dynamic": "HF Trainer, fp32, DataCollatorWithPadding + group_by_length",
    "trainer-bf16-dynamic": "HF Trainer, bf16 autocast, DataCollatorWithPadding + group_by_length",
    "plain-fp32-dynamic": "plain PyTorch loop, fp32, dynamic padding, random order",
    "lmforge-fp32": "lmforge fit(), fp32, dynamic padding + length-grouped batches",
    "lmforge-bf16": "lmforge fit(), bf16 autocast, dynamic padding + length-grouped batches",
    "lmforge-auto": "lmforge fit(), precision auto (bf16 where the CPU has AVX512-BF16/AMX, else fp32)",
}


def sentences(count: int) -> tuple[list[str], list[int], str]:
    if SST2.is_file():
        rows = [line.rstrip("\n").split("\t") for line in SST2.open(encoding="utf-8")][1: count + 1]
        return [r[1] for r in rows], [int(r[0]) for r in rows], "SST-2 train (first rows)"
    rng = random.Random(0)
    words = "the a film movie story plot good bad great dull actors scene very not quite funny boring".split()
    texts = [" ".join(rng.choices(words, k=max(2, int(rng.gauss(10, 6))))) for _ in range(count)]
    return texts, [rng.randint(0, 1) for _ in texts], "synthetic (SST-2 not found)"


def load(precision: str = "fp32"):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmforge.models.resolve import resolve_model

    path = resolve_model("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    return model, tokenizer


def run_trainer(texts, labels, batch_size, precision, static):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model, tokenizer = load()
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length" if static else False)
    rows = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "token_type_ids": encoded["token_type_ids"][i], "labels": labels[i]} for i in range(len(texts))]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, per_device_train_batch_size=batch_size, num_train_epochs=1, learning_rate=5e-5,
                                 weight_decay=0.01, bf16=precision == "bf16", use_cpu=True, save_strategy="no",
                                 report_to=[], logging_strategy="no", disable_tqdm=True, seed=42,
                                 train_sampling_strategy="random" if static else "group_by_length",
                                 dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def run_plain(texts, labels, batch_size):
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(42)
    model, tokenizer = load()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    steps = (len(texts) + batch_size - 1) // batch_size
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps)
    order = torch.randperm(len(texts)).tolist()
    model.train()
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        batch = tokenizer([texts[j] for j in idx], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([labels[j] for j in idx])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def run_lmforge(texts, labels, batch_size, precision):
    from lmforge.data.labelled import TextExample
    from lmforge.tasks.classification import TextClassification, TextClassificationParams
    from lmforge.train.loop import FitData, fit
    from lmforge.train.params import TrainParams

    model, tokenizer = load()
    task = TextClassification(TextClassificationParams(), labels=["0", "1"])
    examples = [TextExample(t, None, (str(y),), "") for t, y in zip(texts, labels, strict=True)]
    data = FitData(task.encode(examples, tokenizer, MAX_LENGTH), [], [], examples, tokenizer.pad_token_id)
    params = TrainParams(epochs=1, batch_size=batch_size, lr=5e-5, precision=precision, tensorboard=False)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        fit(task, model, data, params, Path(run_dir), save_model_fn=lambda m, w: None)
        return time.perf_counter() - start


def run_one(name: str, samples: int, batch_size: int) -> dict:
    texts, labels, source = sentences(samples)
    if name.startswith("trainer"):
        seconds = run_trainer(texts, labels, batch_size, "bf16" if "bf16" in name else "fp32", "static" in name)
    elif name.startswith("plain"):
        seconds = run_plain(texts, labels, batch_size)
    else:
        seconds = run_lmforge(texts, labels, batch_size, name.removeprefix("lmforge-"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": name, "samples_per_s": len(texts) / seconds, "seconds": seconds, "peak_rss_mb": peak_mb,
            "source": source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per config; the median is reported")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.samples, args.batch_size)))
        return
    from lmforge.models.hardware import choose_precision, cpu_capabilities

    capabilities = cpu_capabilities()
    print(f"CPU: {capabilities.detail}; lmforge's precision auto picks "
          f"{choose_precision('auto', capabilities).precision} here (lmforge-auto below)", flush=True)
    names = args.configs.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(args.repeats):  # interleaved, so drift in machine load hits every config alike
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--samples", str(args.samples),
                                  "--batch-size", str(args.batch_size)], capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} failed")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(r)
            print(f"[{repeat + 1}/{args.repeats}] {name:<22} {r['samples_per_s']:8.1f} samples/s  {r['seconds']:7.1f} s  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
    median = {name: statistics.median(r["samples_per_s"] for r in rs) for name, rs in runs.items()}
    print(f"\ndata: {runs[names[0]][0]['source']}, {args.samples} samples, batch {args.batch_size}, "
          f"MiniLM-L6 + classification head, 1 epoch, {args.repeats} interleaved runs each")
    print("\n| config | what | samples/s median (min–max) | peak RSS MB | vs Trainer fp32 static | vs Trainer fp32 dynamic | vs Trainer bf16 dynamic |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        speeds = [r["samples_per_s"] for r in rs]
        ratios = []
        for base in ("trainer-fp32-static", "trainer-fp32-dynamic", "trainer-bf16-dynamic"):
            ratios.append(f"{median[name] / median[base]:.2f}×" if base in median else "–")
        print(f"| {name} | {CONFIGS[name]} | {median[name]:.1f} ({min(speeds):.1f}–{max(speeds):.1f}) | "
              f"{max(r['peak_rss_mb'] for r in rs):.0f} | {' | '.join(ratios)} |")


if __name__ == "__main__":
    main()
