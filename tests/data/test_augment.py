"""EDA operations and `lmforge augment` (EDA, paraphrase, back-translation) feeding data.train_extra."""

from __future__ import annotations

import json
import random

from lmforge.cli import main
from lmforge.data.augment import OPERATIONS, eda, random_deletion, random_swap, synonym_replacement

NEIGHBOURS = {"good": "great", "film": "movie", "dull": "boring"}


def test_eda_operations():
    words = "the film was good".split()
    rng = random.Random(0)
    assert synonym_replacement(words, rng, NEIGHBOURS, 5) == "the movie was great".split()
    assert sorted(random_swap(words, rng, NEIGHBOURS, 1)) == sorted(words)
    assert random_deletion(["one"], rng, NEIGHBOURS, 1) == ["one"] and random_deletion(words, rng, NEIGHBOURS, 4)
    for name in OPERATIONS:
        text, used = eda("the film was good and dull", random.Random(1), NEIGHBOURS, 0.2, name)
        assert used == name and text
    assert eda("the film was good", random.Random(3), NEIGHBOURS) == eda("the film was good", random.Random(3), NEIGHBOURS)


def generation_config(tmp_path, folder, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"task: {{name: generation, prompt: 'Rewrite: {{source}}', max_new_tokens: 6}}\nmodel: {folder}\n",
                    encoding="utf-8")
    return str(path)


def test_augment_eda_and_train_on_the_extra_rows(tiny_config, tmp_path, capsys):
    out = tmp_path / "eda.jsonl"
    assert main(["augment", str(tiny_config), "--method", "eda", "--output", str(out), "--rate", "0.3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 350 < len(rows) <= 400  # one copy of each of the 400 training rows; unchanged copies are dropped
    assert all(r["text"] != r["augmented_from"] and r["method"].startswith("eda:") and r["label"] in ("pos", "neg")
               for r in rows)
    assert main(["augment", str(tiny_config), "--method", "eda", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    run = tmp_path / "run-aug"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", f"data.train_extra=[{out}]", "train.epochs=1"]) == 0
    assert f"{400 + len(rows)} train / 40 validation" in capsys.readouterr().err


def test_paraphrase_and_back_translation_through_generation_models(tiny_config, tmp_path, tiny_chat_llama, capsys):
    first, second = generation_config(tmp_path, tiny_chat_llama, "a"), generation_config(tmp_path, tiny_chat_llama, "b")
    base = [str(tiny_config), "data.max_train_samples=12"]
    out = tmp_path / "bt.jsonl"
    assert main(["augment", *base, "--method", "back-translation", "--via", first, "--via", second,
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["method"] == "back-translation" and r["augmented_from"] for r in rows)
    assert main(["augment", *base, "--method", "paraphrase", "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "needs 1 --via" in capsys.readouterr().err
    assert main(["augment", *base, "--method", "paraphrase", "--via", str(tiny_config),
                 "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "needs a generation model" in capsys.readouterr().err


def test_paraphrase_through_a_trained_generation_run_and_missing_models_fail_first(tiny_config, tmp_path,
                                                                                   tiny_chat_llama, capsys):
    from tests.conftest import make_pairs, write_jsonl

    pairs = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(40))
    run = tmp_path / "gen-run"
    assert main(["train", "task=generation", f"model={tiny_chat_llama}", f"data.train={pairs}", "data.validation_fraction=0",
                 f"train.output_dir={run}", "train.epochs=1", "train.tensorboard=false", "task.max_new_tokens=6"]) == 0
    out = tmp_path / "para.jsonl"
    base = [str(tiny_config), "data.max_train_samples=8"]
    assert main(["augment", *base, "--method", "paraphrase", "--via", str(run), "--output", str(out)]) == 0
    assert all(json.loads(line)["method"] == "paraphrase" for line in out.read_text().splitlines())
    capsys.readouterr()
    assert main(["augment", *base, "--method", "back-translation", "--via", str(run), "--via", str(tmp_path / "no.yaml"),
                 "--output", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no.yaml: not found" in err and "step 1/2" not in err
