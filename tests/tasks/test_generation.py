"""Generation: loss masking (prompt vs reply tokens), chat templates and dialogues, parallel files,
metrics, and train/evaluate/predict runs."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import GenerationExample, read_generation, read_parallel
from lmforge.decode.generate import cut_at_stop_strings
from lmforge.errors import DataError
from lmforge.metrics.generation import generation_scores
from lmforge.tasks.generation import Generation, GenerationParams, reply_only_loss
from tests.conftest import make_pairs, write_jsonl


def chat_task(folder, **params) -> tuple[Generation, AutoTokenizer]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = Generation(GenerationParams(**params))
    task.adapt_tokenizer(tokenizer)
    task.build_model(str(folder), local_files_only=True, trust_remote_code=False)
    return task, tokenizer


def test_loss_counts_only_reply_tokens_and_the_end_of_turn(tiny_chat_llama):
    task, tokenizer = chat_task(tiny_chat_llama, prompt="Translate: {source}", system="sys")
    [feature] = task.encode([GenerationExample("a red dog", "un rouge chien", "x")], tokenizer, max_length=64)
    ids, labels, cut = feature["input_ids"], feature["labels"], feature["_prompt_length"]
    assert all(label == -100 for label in labels[:cut])
    assert labels[cut:] == ids[cut:]
    assert tokenizer.decode(ids[:cut]) == ("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nTranslate: a red dog"
                                           "<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(ids[cut:]) == "un rouge chien<|im_end|>\n"
    [unlabelled] = task.encode([GenerationExample("a red dog", None, "x")], tokenizer, max_length=64)
    assert unlabelled["input_ids"] == ids[:cut] and "labels" not in unlabelled


def test_dialogue_learns_every_assistant_turn_or_only_the_last(tiny_chat_llama):
    turns = [{"role": "user", "content": "a dog"}, {"role": "assistant", "content": "un chien"},
             {"role": "user", "content": "a cat"}]
    example = GenerationExample(None, "un chat", "x", turns)
    for learn_all, expected in ((True, ["un chien<|im_end|>\n", "un chat<|im_end|>\n"]), (False, ["un chat<|im_end|>\n"])):
        task, tokenizer = chat_task(tiny_chat_llama, learn_all_replies=learn_all)
        [feature] = task.encode([example], tokenizer, max_length=64)
        spans, current = [], []
        for token, label in zip(feature["input_ids"], feature["labels"], strict=True):
            if label != -100:
                current.append(token)
            elif current:
                spans.append(current)
                current = []
        spans += [current] if current else []
        assert [tokenizer.decode(span) for span in spans] == expected


def test_plain_text_mode_without_a_template(tiny_chat_llama):
    task, tokenizer = chat_task(tiny_chat_llama, chat_template=False, prompt="{source} =")
    [feature] = task.encode([GenerationExample("a dog", "un chien", "x")], tokenizer, max_length=64)
    cut = feature["_prompt_length"]
    assert tokenizer.decode(feature["input_ids"][:cut]) == "a dog =\n"
    assert tokenizer.decode(feature["input_ids"][cut:]) == "un chien<|im_end|>"


def test_long_prompts_keep_their_end_and_targets_are_truncated(tiny_chat_llama):
    task, tokenizer = chat_task(tiny_chat_llama, max_target_length=3)
    [feature] = task.encode([GenerationExample("a red dog " * 30, "un rouge chien " * 5, "x")], tokenizer, max_length=20)
    cut = feature["_prompt_length"]
    assert cut == 20 and tokenizer.decode(feature["input_ids"][:cut]).endswith("<|im_start|>assistant\n")
    assert len(feature["input_ids"]) - cut == 3


def test_reply_only_loss_equals_the_full_hf_loss(tiny_chat_llama):
    task, tokenizer = chat_task(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    examples = [GenerationExample(r["source"], r["target"], "x") for r in make_pairs(4)]
    from lmforge.data.batching import pad_batch

    batch = pad_batch(task.encode(examples, tokenizer, 64), tokenizer.pad_token_id)
    ours, logits = reply_only_loss(model, batch)
    assert torch.allclose(ours, model(**batch).loss, atol=1e-6)
    assert logits.shape[0] == int((batch["labels"][:, 1:] != -100).sum())


@pytest.mark.parametrize("fixture", ["tiny_chat_llama", "tiny_t5"])
def test_label_smoothing_on_both_loss_paths(request, fixture):
    folder = request.getfixturevalue(fixture)
    task, tokenizer = chat_task(folder)
    examples = [GenerationExample(r["source"], r["target"], "x") for r in make_pairs(4)]
    from lmforge.data.batching import pad_batch

    batch = pad_batch(task.encode(examples, tokenizer, 64), tokenizer.pad_token_id)
    model = task.build_model(str(folder), True, False).eval()
    task.label_smoothing = 0.1
    smoothed, _ = task.loss(model, batch)
    logits, labels = model(**batch).logits, batch["labels"]
    if not task.encoder_decoder:
        logits, labels = logits[:, :-1], labels[:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=0.1)
    assert torch.allclose(smoothed, expected, atol=1e-5)


def test_parallel_files_are_read_as_pairs_and_misalignment_is_an_error(tmp_path):
    source, target = tmp_path / "train.en.gz", tmp_path / "train.fr.gz"
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        handle.write("a dog\na cat\n")
    with gzip.open(target, "wt", encoding="utf-8") as handle:
        handle.write("un chien\nun chat\n")
    examples = read_parallel(str(source), str(target), RowErrors())
    assert [(e.source, e.target) for e in examples] == [("a dog", "un chien"), ("a cat", "un chat")]
    with gzip.open(target, "wt", encoding="utf-8") as handle:
        handle.write("un chien\n")
    with pytest.raises(DataError, match="train.en.gz has more lines than .*train.fr.gz"):
        read_parallel(str(source), str(target), RowErrors())


def test_empty_targets_and_bad_dialogues_name_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"source": "a dog", "target": "un chien"}, {"source": "a cat", "target": " "}])
    with pytest.raises(DataError, match=r"rows.jsonl, line 2: empty target"):
        read_generation(str(path), "source", "target", "messages", RowErrors(), labelled=True)
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match=r"chat.jsonl, line 1: the last turn must be the assistant's reply"):
        read_generation(str(path), "source", "target", "messages", RowErrors(), labelled=True)
    assert read_generation(str(path), "source", "target", "messages", RowErrors(), labelled=False)[0].messages == \
        [{"role": "user", "content": "hi"}]


def test_stop_strings_cut_at_the_earliest():
    assert cut_at_stop_strings("Un chien.\nNote: x ###", ["###", "\n"]) == "Un chien."
    assert cut_at_stop_strings("Un chien.", ["\n", ""]) == "Un chien."


def test_generation_scores():
    perfect = generation_scores(["un grand chien court dans le parc"], ["un grand chien court dans le parc"])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    assert perfect["rougeL"] == pytest.approx(100.0)
    worse = generation_scores(["un chat dort"], ["un chien court"])
    assert worse["bleu"] < 10 and 0 < worse["rouge1"] < 100


def toy_files(tmp_path):
    return (write_jsonl(tmp_path / "train.jsonl", make_pairs(300, seed=1)),
            write_jsonl(tmp_path / "dev.jsonl", make_pairs(30, seed=2)))


def test_decoder_only_run_learns_the_toy_translation_and_predicts(tmp_path, tiny_chat_llama, capsys):
    train, dev = toy_files(tmp_path)
    before = tmp_path / "before"
    config = tmp_path / "config.yaml"
    config.write_text(f"task: generation\nmodel: {tiny_chat_llama}\n", encoding="utf-8")
    args = ["task.prompt=Translate: {source}", "task.max_new_tokens=12", f"data.train={train}", f"data.validation={dev}",
            "data.max_length=48"]
    beam = ["task.decode.strategy=beam", "task.decode.num_beams=2"]  # the config's decode section reaches evaluation
    assert main(["evaluate", str(config), *args, *beam, "--output", str(before)]) == 0
    untrained = json.loads((before / "report.json").read_text())
    assert len((before / "predictions.jsonl").read_text().splitlines()) == 30  # one per validation pair, in order
    run = tmp_path / "run"
    assert main(["train", str(config), *args, f"train.output_dir={run}", "train.epochs=10", "train.lr=5e-3", "train.batch_size=16",
                 "train.tensorboard=false"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["chrf"] > untrained["chrf"] + 25 and report["rouge1"] > untrained["rouge1"] + 40
    assert report["copy_source_baseline"]["bleu"] < 10 and len(report["samples"]) == 5
    capsys.readouterr()
    import io
    import sys

    sys.stdin = io.StringIO('{"source": "a red dog"}\nthe cat sleeps\n')
    try:
        assert main(["predict", str(run), "--input", "-"]) == 0
    finally:
        sys.stdin = sys.__stdin__
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(line) for line in lines] == [{"generated"}, {"generated"}]
    assert all(isinstance(line["generated"], str) for line in lines)
    assert main(["generate", str(run), "--prompt", "a red dog", "--strategy", "beam", "--num-beams", "3"]) == 0
    beamed = capsys.readouterr().out.strip()
    assert main(["generate", str(run), "--prompt", "a red dog"]) == 0  # the run's prompt format and its greedy default
    assert capsys.readouterr().out.strip() == lines[0]["generated"] and beamed


def test_encoder_decoder_run_trains_on_target_labels(tmp_path, tiny_t5):
    train, dev = toy_files(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    task = Generation(GenerationParams())
    task.adapt_tokenizer(tokenizer)
    task.build_model(str(tiny_t5), True, False)
    [feature] = task.encode([GenerationExample("a dog", "un chien", "x")], tokenizer, 32)
    assert feature["labels"] == tokenizer(text_target="un chien")["input_ids"]
    assert tokenizer.decode(feature["input_ids"], skip_special_tokens=True) == "a dog"
    run = tmp_path / "run"
    assert main(["train", "task=generation", f"model={tiny_t5}", f"data.train={train}", f"data.validation={dev}",
                 f"train.output_dir={run}", "train.epochs=10", "train.lr=1e-2", "train.batch_size=16",
                 "train.tensorboard=false", "task.max_new_tokens=12"]) == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "validation" in line]
    assert history[-1]["validation"]["train_loss"] < history[0]["validation"]["train_loss"]
    assert json.loads((run / "report.json").read_text())["rouge1"] > 40


def test_cli_errors_for_generation_inputs(tmp_path, tiny_chat_llama, capsys):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"source": "a dog", "target": ""}])
    assert main(["train", "task=generation", f"model={tiny_chat_llama}", f"data.train={rows}",
                 f"train.output_dir={tmp_path / 'run'}"]) == 2
    assert "rows.jsonl, line 1: empty target" in capsys.readouterr().err
    assert main(["train", "task=generation", "task.prompt=Translate", f"model={tiny_chat_llama}", f"data.train={rows}"]) == 2
    assert "task.prompt" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_several_references_and_caption_metrics_in_evaluate(tmp_path, tiny_chat_llama):
    rows = [{"source": p["source"], "target": [p["target"], p["target"] + " !"]} for p in make_pairs(12, seed=3)]
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    examples = read_generation(str(dev), "source", "target", "messages", RowErrors("raise"), labelled=True)
    assert examples[0].target == rows[0]["target"][0] and examples[0].all_references() == rows[0]["target"]
    assert examples[0].to_record()["target"] == rows[0]["target"]
    config = tmp_path / "config.yaml"
    config.write_text(f"task: generation\nmodel: {tiny_chat_llama}\n", encoding="utf-8")
    out = tmp_path / "eval"
    assert main(["evaluate", str(config), f"data.train={dev}", f"data.validation={dev}", "task.caption_metrics=true",
                 "task.max_new_tokens=4", "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {"coco_bleu_4", "coco_rouge_l", "coco_cider"} <= set(report) and report["coco_cider"] >= 0.0
