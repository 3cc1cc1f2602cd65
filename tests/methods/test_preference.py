"""`tuning.preference` through `lmforge train`: every method learns to prefer the chosen completions of a toy
translation task on a tiny model, full fine-tuning (cached reference) or LoRA (adapters off); a run killed
mid-way resumes bit-exact (the cached reference read back); bad preference data is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lmforge.cli import main
from tests.conftest import crash_after_checkpoint, make_pairs, write_jsonl


def preference_rows(count: int, seed: int = 0) -> list[dict]:
    """The toy translation as preferences: the translation chosen, the untranslated source rejected (a signal a
    tiny model picks up in a few steps)."""
    return [{"prompt": pair["source"], "chosen": pair["target"], "rejected": pair["source"]}
            for pair in make_pairs(count, seed)]


def kto_rows(count: int, seed: int = 0) -> list[dict]:
    rows = []
    for i, row in enumerate(preference_rows(count, seed)):
        good = i % 2 == 0
        rows.append({"prompt": row["prompt"], "completion": row["chosen"] if good else row["rejected"], "label": good})
    return rows


def config(folder: Path, model: Path, tuning: str) -> Path:
    path = folder / "cfg.yaml"
    path.write_text(f"task: generation\nmodel: {model}\n{tuning}\ntrain: {{epochs: 4, lr: 1.0e-2, batch_size: 8, log_every_steps: 1, "
                    "tensorboard: false}\n")
    return path


def report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


@pytest.mark.parametrize("method, peft", [("dpo", False), ("dpo", True), ("ipo", False), ("simpo", False),
                                          ("orpo", False), ("kto", True)])
def test_each_method_learns_to_prefer_the_chosen_completions(tmp_path, tiny_chat_llama, method, peft, capsys):
    rows = kto_rows(64) if method == "kto" else preference_rows(64)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:48])
    held = write_jsonl(tmp_path / "held.jsonl", rows[48:])
    lora = "  peft: {method: lora, r: 8}\n" if peft else ""
    beta = {"ipo": 0.5, "simpo": 2.0}.get(method, 0.5)
    cfg = config(tmp_path, tiny_chat_llama, f"tuning:\n  preference: {{method: {method}, beta: {beta}}}\n{lora}")
    run = tmp_path / "run"
    assert main(["train", str(cfg), f"data.train={train}", f"data.validation={held}", f"train.output_dir={run}"]) == 0, \
        capsys.readouterr().err
    scores = report(run)
    assert "preference_accuracy" in scores and scores["split"] == "validation"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "train_loss" in entry and "rewards/chosen" in entry]
    assert steps, logged[:3]
    if method != "kto":
        assert {"rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"} <= steps[-1].keys()
        assert scores["preference_accuracy"] >= 0.75, scores
    else:
        assert "kl" in steps[-1] and scores["reward_margin"] > 0, scores
    reference = run / "reference_logps.json"
    assert reference.is_file() == (not peft and method in ("dpo", "ipo", "kto"))


def test_an_encoder_decoder_learns_the_preferences_too(tmp_path, tiny_t5, capsys):
    method = "dpo"  # one encoder pass, chosen and rejected as two decoder targets; KTO's KL pairs share the path
    rows = preference_rows(64)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:48])
    held = write_jsonl(tmp_path / "held.jsonl", rows[48:])
    cfg = config(tmp_path, tiny_t5, f"tuning:\n  preference: {{method: {method}, beta: 0.5}}\n")
    run = tmp_path / "run"
    assert main(["train", str(cfg), f"data.train={train}", f"data.validation={held}", f"train.output_dir={run}",
                 "train.epochs=6"]) == 0, capsys.readouterr().err
    scores, before = report(run), report(run)["before_training"]
    assert scores["reward_margin"] > 0 and scores["preference_accuracy"] > before["preference_accuracy"], scores
    assert (run / "reference_logps.json").is_file()


def test_a_killed_dpo_run_resumes_bit_exact_with_its_cached_reference(tmp_path, tiny_chat_llama, monkeypatch):
    train = write_jsonl(tmp_path / "train.jsonl", preference_rows(40))
    cfg = config(tmp_path, tiny_chat_llama, "tuning:\n  preference: {method: dpo}\n")
    common = [f"data.train={train}", "train.save_every_steps=2", "train.dropout=0.1"]
    assert main(["train", str(cfg), f"train.output_dir={tmp_path / 'whole'}", *common]) == 0
    run = tmp_path / "killed"
    crash_after_checkpoint(monkeypatch, ["train", str(cfg), f"train.output_dir={run}", *common])
    cached = (run / "reference_logps.json").read_bytes()
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "reference_logps.json").read_bytes() == cached  # read back, not recomputed
    whole, resumed = load_file(tmp_path / "whole" / "model" / "model.safetensors"), \
        load_file(run / "model" / "model.safetensors")
    assert all(whole[name].equal(resumed[name]) for name in whole)


BAD = [
    ("missing-rejected", [{"prompt": "red dog", "chosen": "rouge chien"}], "dpo", "missing 'rejected'"),
    ("chosen-equals-rejected", [{"prompt": "red dog", "chosen": "rouge", "rejected": "rouge"}], "dpo", "are the same"),
    ("empty-completion", [{"prompt": "red dog", "chosen": " ", "rejected": "bleu"}], "dpo", "'chosen' is empty"),
    ("kto-one-label", [{"prompt": "red dog", "completion": "rouge chien", "label": True}] * 4, "kto",
     "needs both desirable and undesirable"),
    ("kto-label-not-bool", [{"prompt": "red dog", "completion": "rouge", "label": "yes"}], "kto", "'label' must be"),
    ("kto-rows-for-dpo", [{"prompt": "red dog", "completion": "rouge", "label": True}], "dpo", "KTO's"),
]


@pytest.mark.parametrize("name, rows, method, words", BAD, ids=[case[0] for case in BAD])
def test_bad_preference_data_is_one_line_and_no_run_directory(tmp_path, tiny_chat_llama, capsys, name, rows, method,
                                                               words):
    good = kto_rows(8) if method == "kto" and name != "kto-one-label" else preference_rows(8)
    train = write_jsonl(tmp_path / "train.jsonl", (good + rows) if name != "kto-one-label" else rows * 3)
    cfg = config(tmp_path, tiny_chat_llama, f"tuning:\n  preference: {{method: {method}}}\n")
    run = tmp_path / "run"
    code = main(["train", str(cfg), f"data.train={train}", f"train.output_dir={run}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and words in err and "Traceback" not in err, err
    assert not run.exists()


def test_preference_tuning_of_a_classification_task_is_refused(tmp_path, tiny_bert, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 8)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"task: text-classification\nmodel: {tiny_bert}\ntuning: {{preference: {{method: dpo}}}}\n")
    code = main(["train", str(cfg), f"data.train={train}", f"train.output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "tuning.preference trains generation tasks" in err, err
    assert not (tmp_path / "run").exists()


def test_completion_log_probs_equal_the_full_vocabulary_computation(tiny_chat_llama):
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.methods.preference.losses import IGNORE, sequence_logps
    from lmforge.methods.preference.task import completion_log_probs

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    labels = ids.masked_fill(torch.arange(9) < 4, IGNORE).masked_fill(mask == 0, IGNORE)
    for wrapped in (model, get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules="all-linear"))):
        with torch.no_grad():
            fast = completion_log_probs(wrapped, ids, mask, labels)
            full = sequence_logps(wrapped(input_ids=ids, attention_mask=mask).logits, labels)
        assert torch.allclose(fast[0], full[0], atol=1e-5) and fast[1].equal(full[1])


def test_lora_dpo_streams_its_training_rows_and_a_cached_reference_refuses_to(tmp_path, tiny_chat_llama, capsys):
    rows = preference_rows(64)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:48])
    held = write_jsonl(tmp_path / "held.jsonl", rows[48:])
    lora = config(tmp_path, tiny_chat_llama, "tuning:\n  preference: {method: dpo, beta: 0.5}\n  peft: {method: lora, r: 8}\n")
    run = tmp_path / "run"
    assert main(["train", str(lora), f"data.train={train}", f"data.validation={held}", f"train.output_dir={run}",
                 "data.streaming=true"]) == 0, capsys.readouterr().err
    assert json.loads((run / "data" / "train.source.json").read_text())["streaming"] is True  # not a copy of the rows
    assert report(run)["preference_accuracy"] >= 0.75, report(run)
    full = config(tmp_path, tiny_chat_llama, "tuning:\n  preference: {method: dpo}\n")
    capsys.readouterr()
    code = main(["train", str(full), f"data.train={train}", f"train.output_dir={tmp_path / 'full'}", "data.streaming=true"])
    err = capsys.readouterr().err
    assert code == 2 and "caches the reference's log-probs of every training row" in err, err
    assert not (tmp_path / "full").exists()
