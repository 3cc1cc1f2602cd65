"""The README walked as a newcomer would: every command of its ```bash blocks runs, in order and as written, in a
fresh folder where the example configs it names are tiny ones (the tiny random models of conftest, a few rows)
and the placeholders (RUN_DIR, runs/en-fr, photo.jpg …) exist; decoding commands get 16 new tokens, not 128. The walk fails when a command breaks, and when
the README gains a command it does not know (add it to the walk, or to SKIPPED with the reason)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from lmforge.cli import main
from tests.conftest import make_pairs, make_sentences, write_jsonl

ROOT = Path(__file__).resolve().parents[1]

#: README commands the walk does not run, and why
SKIPPED = {
    "make demo": "the set-up command itself (tests/recipes/test_demo.py runs the demo's job)",
    "make test": "the set-up command that runs this very suite",
    "lmforge search examples/search_sst2.yaml search.storage=postgresql://me@db/optuna search.study_name=sst2":
        "needs a PostgreSQL server (shown with a local one in docs/benchmarks.md, issue 26)",
    "lmforge generate ... --image-weight 1 --image-gate gate.json": "an elided command (its flags run in the lines above)",
    **{command: "vLLM lives in its own environment; tests/test_vllm_interop.py checks the hand-over where it is" for
       command in ("vllm serve DIR --dtype float32",
                   "vllm serve BASE --enable-lora --lora-modules support=runs/support/model sales=runs/sales/model",
                   "vllm serve DIR --tensor-parallel-size 4",
                   "vllm serve DIR --tensor-parallel-size 4 --pipeline-parallel-size 2")},
}


def readme_commands() -> list[str]:
    """The commands of the README's ```bash blocks, one per logical line (continuations joined, comments
    dropped); a `python - <<'PY'` here-document is one command with its body."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        lines = iter(block.replace("\\\n", " ").splitlines())
        for line in lines:
            if "<<'PY'" in line:
                body = []
                for inner in lines:
                    if inner.strip() == "PY":
                        break
                    body.append(inner)
                commands.append(line.strip() + "\n" + "\n".join(body))
                continue
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def _tiny_configs(folder: Path, tiny_bert: Path, tiny_llama: Path) -> None:
    """The example configs the README names, tiny: same file names, the toy data and the tiny models."""
    (folder / "examples" / "customer_service").mkdir(parents=True)
    (folder / "data").mkdir()
    train = write_jsonl(folder / "data" / "train.jsonl", make_sentences(120, seed=2))
    dev = write_jsonl(folder / "data" / "dev.jsonl", make_sentences(24, seed=3))
    pairs = write_jsonl(folder / "data" / "pairs-train.jsonl", make_pairs(48, seed=1))
    pairs_dev = write_jsonl(folder / "data" / "pairs-dev.jsonl", make_pairs(8, seed=2))
    fast = "train:\n  epochs: 1\n  batch_size: 16\n  tensorboard: false\n  precision: fp32\n"
    classify = f"task: text-classification\nmodel: {tiny_bert}\ndata:\n  train: {train}\n  validation: {dev}\n  max_length: 32\n{fast}"
    translate = (f"task: {{name: generation, prompt: 'Translate: {{source}}', max_new_tokens: 6}}\nmodel: {tiny_llama}\n"
                 f"data:\n  train: {pairs}\n  validation: {pairs_dev}\n  max_length: 48\n{fast}")
    files = {
        "sst2.yaml": classify,
        "search_sst2.yaml": classify + "search:\n  sampler: random\n  trials: 2\n  space:\n    train.lr: {choices: [1.0e-3, 3.0e-3]}\n",
        "multi30k_smollm2.yaml": translate,
        "sst2_prompt_smollm2.yaml": (f"task: {{name: prompt-classification, template: 'Review: {{text}} Sentiment:', "
                                     f"verbalizer: {{pos: ' good', neg: ' bad'}}}}\nmodel: {tiny_llama}\n"
                                     f"data:\n  train: {train}\n  validation: {dev}\n  max_length: 48\n{fast}"),
        "relevance_chatterbot.yaml": (f"task: relevance-scoring\nmodel: {tiny_bert}\ndata:\n"
                                      "  train: dataset:chatterbot-replies-train\n  validation: dataset:chatterbot-replies-validation\n"
                                      "  text_pair_column: text_pair\n  max_train_samples: 40\n  max_eval_samples: 20\n"
                                      f"  max_length: 48\n{fast}"),
        "customer_service/assistant_smollm2.yaml": (f"task: {{name: generation, max_new_tokens: 6}}\nmodel: {tiny_llama}\n"
                                                    "data:\n  train: dataset:chatterbot-grounded-dialogues\n"
                                                    "  validation_fraction: 0.1\n  max_train_samples: 24\n"
                                                    f"  max_eval_samples: 4\n  max_length: 96\n{fast}"),
    }
    for name, text in files.items():
        (folder / "examples" / name).write_text(text, encoding="utf-8")
    for name in ("faq.jsonl", "questions.jsonl", "evaluate.py"):
        shutil.copy(ROOT / "examples" / "customer_service" / name, folder / "examples" / "customer_service" / name)


def _inputs(folder: Path) -> None:
    """The files the README's commands read."""
    write_jsonl(folder / "other.jsonl", make_sentences(12, seed=5))
    write_jsonl(folder / "texts.jsonl", [{"text": r["text"]} for r in make_sentences(4, seed=6)])
    (folder / "sentences.txt").write_text("a red dog\nthe cat sleeps\n", encoding="utf-8")
    (folder / "person.schema.json").write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}},
                                                           "required": ["name"]}), encoding="utf-8")
    write_jsonl(folder / "dev.jsonl", make_pairs(4, seed=7))
    write_jsonl(folder / "test.jsonl", make_pairs(3, seed=8))
    colours = ("red", "blue", "green", "yellow")
    for colour in colours:
        Image.new("RGB", (64, 64), colour).save(folder / f"{colour}.jpg")
    shutil.copy(folder / "red.jpg", folder / "photo.jpg")
    write_jsonl(folder / "prompts.jsonl", [{"source": "Write a caption.", "image": f"{c}.jpg"} for c in colours[:2]])
    write_jsonl(folder / "pairs.jsonl", [{"image": f"{c}.jpg", "text": f"a {c} square"} for c in colours])
    (folder / "feed.txt").write_text("".join(f"{r['text']}\n" for r in make_sentences(12, seed=9)), encoding="utf-8")
    write_jsonl(folder / "captions.jsonl", [{"source": p["source"], "target": [p["target"], p["target"].upper()]}
                                            for p in make_pairs(4, seed=10)])
    (folder / "captions.yaml").write_text((folder / "examples" / "multi30k_smollm2.yaml").read_text(encoding="utf-8")
                                          .replace("pairs-dev.jsonl", "../captions.jsonl"), encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Walk:
    """Runs README commands in `folder`, with the README's names for models and runs mapped to tiny ones."""

    def __init__(self, folder: Path, names: dict[str, str]):
        self.folder, self.names, self.servers, self.port = folder, names, [], _free_port()

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        mapped = [self.names.get(word, word) for word in words]
        if mapped[:2] == ["lmforge", "generate"] and "--max-new-tokens" not in mapped:  # tiny: 16 tokens, not 128
            mapped += ["--max-new-tokens", "16"]
        if mapped[:2] == ["python", "examples/customer_service/evaluate.py"]:
            mapped += ["--max-tokens", "16"]
        if mapped[:2] == ["lmforge", "search"] and "--resume" in mapped:  # the search folder the first search made
            mapped[-1] = str(next(p for p in sorted((self.folder / "runs").glob("search-*")) if (p / "study.db").exists()))
        return mapped

    def run(self, command: str) -> None:
        if command.startswith("python - <<'PY'"):
            script = command.partition("\n")[2].replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
            self._subprocess([sys.executable, "-c", script])
            return
        stdin = None
        if "|" in command:
            feeder, _, command = command.partition("|")
            stdin = (shlex.split(feeder)[1] + "\n" if feeder.startswith("echo") else
                     (self.folder / shlex.split(feeder)[-1]).read_text(encoding="utf-8"))
        background = command.endswith("&")
        argv = self.argv(command.rstrip("& ").strip())
        if argv[0] == "python":
            self._subprocess([sys.executable, *argv[1:]])
        elif stdin is not None:  # a real pipe, as the shell gives (monitor waits on its file descriptor)
            self._subprocess([sys.executable, "-m", "lmforge.cli", *argv[1:]], stdin)
        elif argv[:2] == ["lmforge", "serve"]:
            self._serve(argv[1:] + (["--served-model-name", "smollm2-135m-instruct"] if background else []))
        else:
            self._main(argv[1:])

    def _main(self, argv: list[str]) -> None:
        cwd = os.getcwd()
        os.chdir(self.folder)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        finally:
            os.chdir(cwd)
        assert code == 0, f"lmforge {' '.join(argv)} exited {code}"

    def _subprocess(self, argv: list[str], stdin: str | None = None) -> None:
        done = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=600, input=stdin,
                              env=os.environ | {"PYTHONPATH": str(ROOT / "src")})
        assert done.returncode == 0, done.stderr[-3000:]

    def _serve(self, argv: list[str]) -> None:
        self.stop_servers()
        self.port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "lmforge.cli", *argv, "--port", str(self.port)], cwd=self.folder,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.servers.append(server)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read()[-3000:]
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            time.sleep(0.5)
        raise AssertionError(f"lmforge {' '.join(argv)} did not answer /health within 180 s")

    def stop_servers(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(timeout=30)
        self.servers.clear()


def test_every_readme_command_runs_on_tiny_models(tmp_path, tiny_bert, tiny_chat_llama, capsys):
    pytest.importorskip("fastapi")
    commands = readme_commands()
    assert "lmforge train examples/sst2.yaml train.lr=3e-5 data.max_length=64" in commands
    llama = tmp_path / "tiny-llama"  # the tiny chat model with room for the FAQ-grounded prompts (RoPE: any length)
    shutil.copytree(tiny_chat_llama, llama)
    config = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 1024}), encoding="utf-8")
    _tiny_configs(tmp_path, tiny_bert, llama)
    _inputs(tmp_path)
    run = tmp_path / "runs" / "classify"
    translation = tmp_path / "runs" / "translate"
    assert main(["train", str(tmp_path / "examples" / "sst2.yaml"), f"train.output_dir={run}"]) == 0
    assert main(["train", str(tmp_path / "examples" / "multi30k_smollm2.yaml"), f"train.output_dir={translation}"]) == 0
    lora = tmp_path / "runs" / "lora"  # the adapters served beside their base
    assert main(["train", str(tmp_path / "examples" / "multi30k_smollm2.yaml"), f"train.output_dir={lora}",
                 "tuning.peft.method=lora", "train.epochs=1"]) == 0
    names = {"RUN_DIR": str(run), "runs/text-classification-20261122-101500": str(run), "smollm2-135m-instruct":
             str(llama), **{f"runs/{name}": str(translation) for name in ("en-fr", "fr-en", "multi30k")},
             "support=runs/support": f"support={lora}", "sales=runs/sales": f"sales={lora}"}
    walk = Walk(tmp_path, names)
    ran = []
    try:
        for command in commands:
            if command in SKIPPED:
                continue
            started = time.perf_counter()
            try:
                walk.run(command)
            except AssertionError as failure:
                raise AssertionError(f"README command failed: {command}\n{failure}") from None
            ran.append((command.splitlines()[0], time.perf_counter() - started))
    finally:
        walk.stop_servers()
    capsys.readouterr()
    with capsys.disabled():
        print(f"\nREADME walk: {len(ran)} commands ran, {sum(c in SKIPPED for c in commands)} skipped "
              f"({', '.join(sorted(SKIPPED))}); slowest: "
              + ", ".join(f"{c[:40]}… {s:.0f} s" for c, s in sorted(ran, key=lambda r: -r[1])[:3]))
    unknown = set(SKIPPED) - set(commands)
    assert not unknown, f"SKIPPED names commands the README no longer has: {unknown}"
