"""Every bad input a user or a broken file can give the CLI is one `error:` line and exit 2: no traceback,
no run directory and no temporary file left behind (so the same command works once the input is fixed)."""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from lmforge.cli import main
from tests.conftest import make_sentences, write_jsonl

NOT_UTF8 = b"\xff\xfe bad bytes"


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of `lmforge ARGV` in this process."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def huge_png(path: Path, side: int = 20_000) -> Path:
    """A PNG whose header claims side × side pixels (a decompression bomb), a few bytes on disk."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def alias_bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "task: text-classification\n" + "\n".join(lines) + "\n"


class Files:
    """Builds the inputs of the cases in one temporary folder."""

    def __init__(self, root: Path, tiny_bert: Path, llama: Path):
        self.root, self.tiny_bert, self.llama = root, tiny_bert, llama
        self.train = write_jsonl(root / "train.jsonl", make_sentences(60, seed=2))
        self.run = root / "run"  # every training case points here; none may leave it behind

    def file(self, name: str, content: bytes | str) -> str:
        path = self.root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def config(self, text: str) -> str:
        return self.file("cfg.yaml", text)

    def classify(self, train: str, extra: str = "") -> list[str]:
        cfg = self.config(f"task: text-classification\nmodel: {self.tiny_bert}\n{extra}")
        return ["train", cfg, f"data.train={train}", f"train.output_dir={self.run}", "train.epochs=1"]

    def generation(self, task: str, tuning: str = "") -> list[str]:
        train = self.file("pairs.jsonl", '{"source": "red dog", "target": "chien rouge"}\n' * 20)
        cfg = self.config(f"task: {task}\nmodel: {self.llama}\n{tuning}")
        return ["train", cfg, f"data.train={train}", f"train.output_dir={self.run}", "train.epochs=1"]

    def project(self) -> str:
        """A user's project folder holding a config.yaml beside their own files (not a run directory)."""
        folder = self.root / "project"
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(f"task: text-classification\nmodel: {self.tiny_bert}\n")
        (folder / "notes.txt").write_text("my notes")
        return str(folder)

    def loop(self) -> str:
        """A data path that is a symbolic link pointing at itself."""
        link = self.root / "loop.jsonl"
        link.symlink_to(link)
        return str(link)

    def generate(self, *flags: str) -> list[str]:
        return ["generate", str(self.llama), "--prompt", "red dog", *flags]


GOOD_ROWS = b'{"text": "a good film", "label": "pos"}\n'
#: (name, argv builder, words the error holds)
CASES: list[tuple[str, Callable[[Files], list[str]], str]] = [
    ("config-not-utf8", lambda f: ["train", f.file("cfg.yaml", b"task: text-classification\nmodel: \xff\n")],
     "cfg.yaml, line 2: not UTF-8"),
    ("config-nested-100000", lambda f: ["train", f.config("a: " + "[" * 100_000 + "]" * 100_000 + "\n")],
     "nested more than"),
    ("config-alias-bomb", lambda f: ["train", f.config(alias_bomb())], "expands to more than"),
    ("override-alias-bomb", lambda f: ["train", "task=text-classification", "train.x=" + "[" * 100 + "]" * 100],
     "nested more than"),
    ("jsonl-not-utf8", lambda f: f.classify(f.file("bad.jsonl", GOOD_ROWS + b'{"text": "' + NOT_UTF8 + b'", "label": "neg"}\n')),
     "bad.jsonl, line 2: not UTF-8"),
    ("csv-not-utf8", lambda f: f.classify(f.file("bad.csv", b"text,label\ngood,pos\n" + NOT_UTF8 + b",neg\n")),
     "bad.csv, line 3: not UTF-8"),
    ("gz-not-gzip", lambda f: f.classify(f.file("plain.jsonl.gz", GOOD_ROWS * 10)), "not a readable .gz"),
    ("gz-truncated", lambda f: f.classify(f.file("cut.jsonl.gz", gzip.compress(f.train.read_bytes())[:300])),
     "not a readable .gz"),
    ("conll-not-utf8", lambda f: ["train", f.config(f"task: token-classification\nmodel: {f.tiny_bert}\n"),
                                  "data.train=" + f.file("bad.conll", b"EU B-ORG\n" + NOT_UTF8 + b" O\n\n"),
                                  f"train.output_dir={f.run}"], "bad.conll, line 2: not UTF-8"),
    ("template-unknown-field", lambda f: f.generation("{name: generation, prompt: 'Translate: {input}'}"),
     "the only field is {source}"),
    ("template-lone-brace", lambda f: f.generation("{name: generation, prompt: 'Say {source} {'}"),
     "write {{ and }} for literal braces"),
    ("python-reward-without-allow-code", lambda f: f.generation(
        "generation", "tuning: {sequence: {method: mrt, rewards: [{name: python, function: 'r.py:f'}]}}"),
     "add allow_code: true"),
    ("generate-input-not-utf8", lambda f: ["generate", str(f.llama), "--input", f.file("p.txt", b"ok\n" + NOT_UTF8)],
     "p.txt, line 2: not UTF-8"),
    ("generate-logit-bias-outside", lambda f: f.generate("--logit-bias", "99999999=5"), "not in the vocabulary"),
    ("generate-batch-size-0", lambda f: f.generate("--batch-size", "0"), "--batch-size"),
    ("generate-batch-size-negative", lambda f: f.generate("--batch-size", "-1"), "--batch-size"),
    ("generate-max-new-tokens-0", lambda f: f.generate("--max-new-tokens", "0"), "--max-new-tokens"),
    ("generate-max-new-tokens-negative", lambda f: f.generate("--max-new-tokens", "-5"), "--max-new-tokens"),
    ("generate-max-new-tokens-huge", lambda f: f.generate("--max-new-tokens", "10000000000"), "positions"),
    ("generate-batch-size-text", lambda f: f.generate("--batch-size", "abc"), "see lmforge generate --help"),
    ("generate-output-is-a-folder", lambda f: f.generate("--output", str(f.root)), "is a folder"),
    ("image-decompression-bomb", lambda f: f.generate("--strategy", "contrastive", "--image-weight", "1",
                                                      "--image", str(huge_png(f.root / "huge.png"))), "too many pixels"),
    ("image-empty", lambda f: f.generate("--strategy", "contrastive", "--image-weight", "1",
                                         "--image", f.file("empty.png", b"")), "empty.png"),
    ("image-text-named-jpg", lambda f: f.generate("--strategy", "contrastive", "--image-weight", "1",
                                                  "--image", f.file("notes.jpg", "just text\n")), "not an image"),
    ("predict-output-is-a-folder", lambda f: ["predict", str(f.run), "--input", str(f.train), "--output", str(f.root)],
     "is a folder"),
    ("serve-port-out-of-range", lambda f: ["serve", "minilm-l6", "--port", "70000"], "--port"),
    # round 2 (issue 39): folders lmforge did not make, non-finite numbers, paths under files, costly patterns
    ("resume-a-folder-lmforge-did-not-make", lambda f: ["train", "--resume", f.project()], "not a run directory made by"),
    ("resume-a-file", lambda f: ["train", "--resume", f.file("notes.txt", "mine")], "it is a file"),
    ("train-a-directory", lambda f: ["train", f.project()], "is a folder"),
    ("lr-infinite", lambda f: f.classify(str(f.train)) + ["train.lr=inf"], "train.lr"),
    ("lr-nan", lambda f: f.classify(str(f.train)) + ["train.lr=nan"], "finite number"),
    ("weight-decay-infinite", lambda f: f.classify(str(f.train)) + ["train.weight_decay=-inf"], "finite number"),
    ("label-smoothing-nan", lambda f: f.classify(str(f.train)) + ["tuning.label_smoothing=nan"], "finite number"),
    ("train-seed-negative", lambda f: f.classify(str(f.train)) + ["train.seed=-1"], "train.seed"),
    ("train-seed-over-32-bits", lambda f: f.classify(str(f.train)) + [f"train.seed={2**40}"], "train.seed"),
    ("output-dir-is-a-file", lambda f: f.classify(str(f.train)) + [f"train.output_dir={f.file('a_file', 'x')}"],
     "is a file"),
    ("output-dir-under-a-file", lambda f: f.classify(str(f.train)) + [f"train.output_dir={f.file('a_file', 'x')}/run"],
     "which is a file"),
    ("predict-output-under-a-file", lambda f: ["predict", str(f.run), "--input", str(f.train), "--output",
                                               f.file("a_file", "x") + "/out.jsonl"], "which is a file"),
    ("generate-output-under-a-file", lambda f: f.generate("--output", f.file("a_file", "x") + "/out.jsonl"),
     "which is a file"),
    ("data-symlink-loop", lambda f: f.classify(f.loop()), "loops back on itself"),
    ("text-is-a-number", lambda f: f.classify(f.file("numbers.jsonl", '{"text": 42, "label": "pos"}\n' * 8)),
     "holds int 42"),
    ("generate-temperature-nan", lambda f: f.generate("--strategy", "sample", "--temperature", "nan"), "finite number"),
    ("generate-top-p-infinite", lambda f: f.generate("--strategy", "sample", "--top-p", "inf"), "finite number"),
    ("generate-logit-bias-nan", lambda f: f.generate("--logit-bias", "5=nan"), "finite number"),
    ("generate-seed-over-64-bits", lambda f: f.generate("--strategy", "sample", "--seed", str(2**70)), "seed"),
    ("generate-regex-nested-repeats", lambda f: f.generate("--regex", "(a{1,999}){1,999}"), "automaton states"),
    ("generate-schema-huge-string", lambda f: f.generate("--json-schema", '{"type": "string", "maxLength": 100000}'),
     "automaton states"),
    ("generate-regex-unusable", lambda f: f.generate("--regex", "(a"), "not a usable regular expression"),
    ("serve-llama-cpp-for-an-encoder", lambda f: ["serve", "minilm-l6", "--engine", "llama.cpp"],
     "--engine llama.cpp applies to generation"),
    ("serve-chat-template-missing", lambda f: ["serve", str(f.llama), "--chat-template", str(f.root / "no.jinja")],
     "no such file"),
    ("serve-chat-template-not-jinja", lambda f: ["serve", str(f.llama), "--chat-template",
                                                 f.file("t.jinja", "{% for m in %}")], "not a Jinja template"),
    ("serve-chat-template-for-an-encoder", lambda f: ["serve", "minilm-l6", "--chat-template", f.file("t.jinja", "x")],
     "--chat-template renders chats"),
    ("preference-reward-model-not-a-run", lambda f: f.generation(
        "generation", f"tuning: {{sequence: {{method: grpo, rewards: [{{name: reward_model, run: {f.root}}}]}}}}"),
     "is not an lmforge run directory"),
]


@pytest.fixture
def files(tmp_path, tiny_bert, tiny_chat_llama) -> Files:
    return Files(tmp_path, tiny_bert, tiny_chat_llama)


@pytest.mark.parametrize("name, build, words", CASES, ids=[case[0] for case in CASES])
def test_a_bad_input_is_one_error_line_and_leaves_nothing(files, capsys, name, build, words):
    argv = build(files)
    code, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert [line.startswith("error: ") for line in lines].count(True) == 1 and "Traceback" not in err, err
    assert words in err, err
    assert not files.run.exists(), "the run directory was left behind"
    assert not list(files.root.rglob(".tmp-*")), "a temporary file was left behind"
    if (files.root / "project").exists():  # a user's folder: untouched
        assert sorted(p.name for p in (files.root / "project").iterdir()) == ["config.yaml", "notes.txt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    train = write_jsonl(folder / "train.jsonl", make_sentences(80, seed=2))
    config = folder / "cfg.yaml"
    config.write_text(f"task: text-classification\nmodel: {tiny_bert}\n")
    assert main(["train", str(config), f"data.train={train}", f"train.output_dir={folder / 'run'}", "train.epochs=1",
                 "train.tensorboard=false"]) == 0
    return folder / "run"


def test_predict_and_monitor_refuse_input_that_is_not_utf8_from_a_file_or_stdin(trained, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(GOOD_ROWS + NOT_UTF8 + b"\n")
    code, err = run_cli(["predict", str(trained), "--input", str(bad)], capsys)
    assert code == 2 and err.count("error:") == 1 and "bad.jsonl, line 2: not UTF-8" in err, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a good film\n" + NOT_UTF8 + b"\n")))
    code, err = run_cli(["predict", str(trained), "--input", "-"], capsys)
    assert code == 2 and "<stdin>, line 2: not UTF-8" in err and "Traceback" not in err, err
    code, err = run_cli(["monitor", str(trained), "--input", str(bad)], capsys)
    assert code == 2 and err.count("error:") == 1 and "bad.jsonl, line 2: not UTF-8" in err, err

def test_image_errors_in_training_leave_no_run_directory(tmp_path, tiny_chat_llama, tiny_clip, capsys):
    for colour in ("red", "blue"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
    good = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(good, "PNG")
    broken = {"empty.png": b"", "cut.png": good.getvalue()[:60], "notes.jpg": b"just text\n"}
    config = tmp_path / "cfg.yaml"
    config.write_text(f"task: {{name: image-captioning, image_network: {tiny_clip}, prefix_length: 2}}\n"
                      f"model: {tiny_chat_llama}\n")
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        rows = [{"image": "red.png", "caption": "a red dog"}, {"image": "blue.png", "caption": "a blue dog"}] * 4
        train = write_jsonl(tmp_path / "train.jsonl", rows + [{"image": name, "caption": "a dog"}])
        run = tmp_path / "run"
        code, err = run_cli(["train", str(config), f"data.train={train}", f"train.output_dir={run}"], capsys)
        assert code == 2 and err.count("error:") == 1 and name in err and "Traceback" not in err, err
        assert not run.exists() and not list(tmp_path.rglob(".tmp-*"))


def test_the_bad_input_table_is_counted(capsys):
    with capsys.disabled():
        print(f"\nbad-input table: {len(CASES)} CLI cases (+ predict file/stdin and 3 training images)")
    assert len({case[0] for case in CASES}) == len(CASES)


def test_an_empty_config_lists_every_missing_field_as_one_error_line_each(tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text("")
    code, err = run_cli(["train", str(config)], capsys)
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) >= 2 and all(line.startswith("error: ") for line in lines), err  # README: listed together
