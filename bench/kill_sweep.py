"""Kill sweep: a run killed at random moments — mid-step, mid-checkpoint, mid-model-write — and resumed
each time ends with the same weights, bit for bit, as one never interrupted, and leaves no temporary file.
With `--signal term` (what docker stop, systemd and Kubernetes send) each stop must also be clean on its own:
exit 143, one line, no .tmp-* left before the resume.

One uninterrupted reference run, then `--trials` runs of the same config; each is killed `--kills-per-trial`
times (alternating: at a random second, or the moment a checkpoint or model staging folder appears) and
resumed with `lmforge train --resume` until it finishes. Prints one line per kill and a verdict.

    python bench/kill_sweep.py --trials 6 --kills-per-trial 2
    python bench/kill_sweep.py --signal term --trials 4 --kills-per-trial 2
    python bench/kill_sweep.py --rows 5000000 --streaming --max-steps 60 --save-every-steps 10 --trials 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SST2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2" / "train.tsv"
COMMAND = [sys.executable, "-m", "lmforge.cli", "train"]


def write_data(folder: Path, rows: int) -> Path:
    """SST-2's first rows as jsonl, repeated when more are asked for (synthetic sentences when the shared
    data is absent)."""
    import json

    if SST2.is_file():
        lines = SST2.read_text(encoding="utf-8").splitlines()[1: rows + 1]
        records = [{"text": line.split("\t")[1], "label": line.split("\t")[0]} for line in lines]
    else:
        rng = random.Random(0)
        words = ["good", "bad", "film", "plot", "actors", "great", "dull", "story", "very", "the"]
        records = [{"text": " ".join(rng.choices(words, k=8)), "label": str(rng.randint(0, 1))}
                   for _ in range(min(rows, 60_000))]
    base = [json.dumps(r) + "\n" for r in records]
    path = folder / "train.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, rows, len(base)):
            handle.writelines(base[: min(len(base), rows - start)])
    return path


def digest(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def staging_of(run: Path) -> list[Path]:
    """Staging folders of checkpoints and the model being written now."""
    return [*run.glob("checkpoints/.tmp-*"), *run.glob(".tmp-*")]


def kill_when(process: subprocess.Popen, run: Path, mode: str, seconds: float, sent: int = signal.SIGKILL) -> str:
    """Send `sent` to `process` per `mode` (at `seconds`, or when a staging folder appears); what it was doing
    (and, for SIGTERM, how it ended: its exit code, last line and the staging files it left)."""
    started, before = time.perf_counter(), set(staging_of(run))  # a killed run's leftovers: the resume cleans them
    while process.poll() is None:
        staging = [p for p in staging_of(run) if p not in before]
        if (mode == "write" and staging) or (mode == "random" and time.perf_counter() - started >= seconds):
            process.send_signal(sent)
            _, err = process.communicate()
            where = "writing " + staging[0].name if staging else "training"
            what = f"killed at {time.perf_counter() - started:.2f} s ({where})"
            if sent == signal.SIGTERM:
                last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
                what += f": exit {process.returncode}, {len(leftovers(run))} .tmp-*/.old-* left, said {last[0][:60]!r}"
            return what
        time.sleep(0.001 if mode == "write" else 0.01)
    return "finished before the kill"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--kills-per-trial", type=int, default=2)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--rows", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streaming", action="store_true", help="data.streaming=true (validation: 500 held-out rows)")
    parser.add_argument("--max-steps", type=int, help="train.max_steps (a part of a large file)")
    parser.add_argument("--save-every-steps", type=int, default=4)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill",
                        help="SIGKILL (nothing can clean up) or SIGTERM (must stop cleanly: exit 143, no staging left)")
    args = parser.parse_args()
    sent = signal.SIGTERM if args.signal == "term" else signal.SIGKILL
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="kill-sweep-") as tmp:
        folder = Path(tmp)
        train = write_data(folder, args.rows)
        config = folder / "cfg.yaml"
        config.write_text(f"task: text-classification\nmodel: {args.model}\n", encoding="utf-8")
        common = [f"data.train={train}", "data.max_length=48", "train.epochs=2", "train.batch_size=16",
                  f"train.save_every_steps={args.save_every_steps}", "train.dropout=0.1", "train.tensorboard=false"]
        if args.streaming:
            common += ["data.streaming=true", "data.max_eval_samples=500"]
        if args.max_steps:
            common += [f"train.max_steps={args.max_steps}"]
        started = time.perf_counter()
        subprocess.run([*COMMAND, str(config), f"train.output_dir={folder / 'whole'}", *common], env=env, check=True,
                       capture_output=True)
        reference, whole_s = digest(folder / "whole"), time.perf_counter() - started
        print(f"reference run: {whole_s:.1f} s, model sha256 {reference[:16]}")
        kills, exact, unclean = 0, 0, 0
        for trial in range(args.trials):
            run = folder / f"trial-{trial}"
            argv = [*COMMAND, str(config), f"train.output_dir={run}", *common]
            for n in range(args.kills_per_trial):
                mode = "write" if (trial + n) % 2 else "random"
                process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                what = kill_when(process, run, mode, rng.uniform(3.0, whole_s), sent)
                kills += what.startswith("killed")
                unclean += sent == signal.SIGTERM and what.startswith("killed") and (
                    process.returncode != 143 or bool(leftovers(run)))
                print(f"trial {trial}, kill {n + 1} ({mode}): {what}")
                argv = [*COMMAND, "--resume", str(run)]
            finished = subprocess.run(argv, env=env, capture_output=True, text=True)
            if finished.returncode != 0:
                print(f"trial {trial}: resume failed:\n{finished.stderr[-2000:]}")
                continue
            same, left = digest(run) == reference, leftovers(run)
            exact += same and not left
            print(f"trial {trial}: {'bit-exact' if same else 'DIFFERENT'}, temporary files left: {len(left)}")
        print(f"{kills} SIG{args.signal.upper()} over {args.trials} trials: {exact}/{args.trials} bit-exact with no "
              f".tmp-*/.old-* left" + (f"; {kills - unclean}/{kills} stops clean (exit 143, nothing staged left)"
                                       if sent == signal.SIGTERM else ""))
        sys.exit(0 if exact == args.trials and not unclean else 1)


if __name__ == "__main__":
    main()
