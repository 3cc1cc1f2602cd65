"""Data that outgrows memory: time to the first optimizer step and peak RSS of `lmforge train` as the
training file grows, with the rows held as Python lists (data.arrow=false, the old path), in a
memory-mapped Arrow table (data.arrow=true) — then the Arrow run again, which reads its cache — and read
from the file as needed (data.streaming=true: a counting pass, then batches tokenised as drawn).

SST-2 sentences (../shared/data/sst2; synthetic when absent) repeated to N rows of jsonl, MiniLM-L6,
max_length 64, batch 32, validation on SST-2 dev. Each run is stopped a few seconds after its first
optimizer step; RSS is sampled every 0.1 s over the whole process tree.

    python bench/data_scale.py --rows 10000,100000,1000000 --paths list,arrow,arrow-again,stream
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SST2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"


def sentences() -> list[dict]:
    if (SST2 / "train.tsv").is_file():
        lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return [{"text": line.split("\t")[1], "label": line.split("\t")[0]} for line in lines]
    rng = random.Random(0)
    words = ["good", "bad", "film", "plot", "actors", "great", "dull", "story", "very", "the"]
    return [{"text": " ".join(rng.choices(words, k=12)), "label": str(rng.randint(0, 1))} for _ in range(60_000)]


def write_rows(path: Path, count: int) -> None:
    base = [json.dumps(r) + "\n" for r in sentences()]
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, count, len(base)):
            handle.writelines(base[: min(len(base), count - start)])


def validation(folder: Path) -> str:
    if (SST2 / "dev.tsv").is_file():
        rows = [{"text": line.split("\t")[1], "label": line.split("\t")[0]}
                for line in (SST2 / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    else:
        rows = sentences()[:500]
    path = folder / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


PATHS = {"list": ["data.arrow=false"], "arrow": ["data.arrow=true"], "arrow-again": ["data.arrow=true"],
         "stream": ["data.streaming=true"]}


def measure(train: Path, dev: str, run_dir: Path, path: str, cache: Path, after_step_s: float) -> dict:
    """Seconds to the first optimizer step, peak RSS (MB) up to a few seconds after it, run-directory size."""
    command = [sys.executable, "-m", "lmforge.cli", "train", "task=text-classification", "model=minilm-l6",
                "data.max_length=64", "train.batch_size=32", "train.epochs=1",
                f"data.train={train}", f"data.validation={dev}", *PATHS[path],
                f"train.output_dir={run_dir}", "train.log_every_steps=1", "train.tensorboard=false"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = psutil.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, first_step = 0, None
    log = run_dir / "metrics.jsonl"
    while process.poll() is None:
        peak = max(peak, tree_rss(process))
        if first_step is None and log.is_file() and log.stat().st_size > 0:
            first_step = time.perf_counter() - started
        if first_step is not None and time.perf_counter() - started > first_step + after_step_s:
            process.kill()
            break
        time.sleep(0.1)
    process.wait()
    if first_step is None:
        raise SystemExit(f"the run never stepped:\n{process.stderr.read()[-3000:]}")
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    return {"first_step_s": round(first_step, 1), "peak_rss_mb": round(peak / 2**20), "run_dir_mb": round(size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--paths", default="list,arrow,arrow-again", help="list, arrow, arrow-again (cache warm), stream")
    parser.add_argument("--after-step", type=float, default=5.0, help="seconds to keep training after the first step")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        folder = Path(tmp)
        dev = validation(folder)
        for count in [int(n) for n in args.rows.split(",")]:
            train = folder / f"train-{count}.jsonl"
            write_rows(train, count)
            cache = folder / f"cache-{count}"
            for path in args.paths.split(","):
                run_dir = folder / f"run-{count}-{path}"
                r = measure(train, dev, run_dir, path, cache, args.after_step)
                r |= {"rows": count, "path": path, "file_mb": round(train.stat().st_size / 2**20, 1)}
                results.append(r)
                print(json.dumps(r), flush=True)
                shutil.rmtree(run_dir, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            train.unlink()
    print("\n| rows | jsonl MB | path | s to first step | peak RSS MB | run dir MB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['file_mb']} | {r['path']} | {r['first_step_s']} | {r['peak_rss_mb']} | {r['run_dir_mb']} |")


if __name__ == "__main__":
    main()
