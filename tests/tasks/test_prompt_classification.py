"""Template + verbalizer classification with a causal LM."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.data.batching import pad_batch
from lmforge.data.labelled import TextExample
from lmforge.tasks.prompt_classification import PromptClassification, PromptClassificationParams
from tests.conftest import make_sentences, write_jsonl

VERBALIZER = {"pos": " red", "neg": " blue dog"}  # words of the toy tokenizer; one spans several tokens


def test_scores_are_the_log_likelihood_of_each_label_word(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    task = PromptClassification(PromptClassificationParams(template="{text} It was", verbalizer=VERBALIZER), ["neg", "pos"])
    task.adapt_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    examples = [TextExample("a cat", None, ("pos",), "x"), TextExample("the big green dog runs", None, ("neg",), "y")]
    batch = pad_batch(task.encode(examples, tokenizer, 64), tokenizer.pad_token_id)
    scores = task.forward(model, batch)
    assert scores.shape == (2, 2)
    for row, example in enumerate(examples):
        prompt = tokenizer(f"{example.text} It was")["input_ids"]
        for column, label in enumerate(["neg", "pos"]):
            word = tokenizer(VERBALIZER[label], add_special_tokens=False)["input_ids"]
            log_probs = torch.log_softmax(model(torch.tensor([prompt + word])).logits[0].float(), -1)
            expected = sum(log_probs[len(prompt) - 1 + i, token] for i, token in enumerate(word))
            assert torch.allclose(scores[row, column], expected, atol=1e-4)


def test_zero_shot_evaluation_then_prompt_tuning_through_the_cli(tmp_path, tiny_chat_llama, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(300, seed=2))
    dev = write_jsonl(tmp_path / "dev.jsonl", make_sentences(60, seed=3))
    config = tmp_path / "prompt.yaml"
    config.write_text("task:\n  name: prompt-classification\n  template: '{text} It was'\n"
                      f"  verbalizer: {json.dumps(VERBALIZER)}\n"
                      f"model: {tiny_chat_llama}\n"
                      f"data: {{train: {train}, validation: {dev}, max_length: 48}}\n"
                      "train: {epochs: 8, batch_size: 16, lr: 3.0e-3, tensorboard: false}\n", encoding="utf-8")
    assert main(["evaluate", str(config), "--output", str(tmp_path / "zero-shot")]) == 0
    zero_shot = json.loads((tmp_path / "zero-shot" / "report.json").read_text())
    assert 0.0 <= zero_shot["accuracy"] <= 1.0 and "majority_baseline" in zero_shot
    run = tmp_path / "run"
    assert main(["train", str(config), f"train.output_dir={run}"]) == 0
    tuned = json.loads((run / "report.json").read_text())
    assert tuned["accuracy"] >= 0.8 > zero_shot["accuracy"]
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": "the film was good"}, {"text": "a dull story"}])
    assert main(["predict", str(run), "--input", str(texts), "--output", str(tmp_path / "p.jsonl")]) == 0
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [set(p["probabilities"]) for p in predicted] == [{"pos", "neg"}] * 2
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predicted)
    capsys.readouterr()
    assert main(["train", str(config), f"train.output_dir={tmp_path / 'bad'}", "task.verbalizer={pos: ' red'}"]) == 2
    assert "task.verbalizer has no word for label(s) 'neg'" in capsys.readouterr().err


def test_chat_template_wraps_the_filled_template_as_the_users_message(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    params = PromptClassificationParams(template="Is this positive? {text}", verbalizer=VERBALIZER, chat_template=True)
    task = PromptClassification(params, ["neg", "pos"])
    task.adapt_tokenizer(tokenizer)
    assert task.prompt_text("a cat") == "<|im_start|>user\nIs this positive? a cat<|im_end|>\n<|im_start|>assistant\n"
