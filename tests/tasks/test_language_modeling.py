"""Continued pre-training: packing boundaries, BERT-style masking, and MLM/CLM runs through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lmforge.cli import main
from lmforge.tasks.language_modeling import LanguageModeling, LanguageModelingParams, pack
from tests.conftest import make_sentences


def test_packing_keeps_every_token_and_separates_documents():
    documents = [[1, 2, 3], [4, 5, 6, 7], [8]]
    blocks = pack(documents, separator=0, block_size=4)
    assert blocks == [[1, 2, 3, 0], [4, 5, 6, 7], [0, 8]]
    assert [t for b in blocks for t in b] == [1, 2, 3, 0, 4, 5, 6, 7, 0, 8]
    assert pack(documents, None, 5) == [[1, 2, 3, 4, 5], [6, 7, 8]]


def test_packed_features_are_full_blocks(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = LanguageModeling(LanguageModelingParams())
    task.adapt_tokenizer(tokenizer)
    from lmforge.data.labelled import TextExample

    examples = [TextExample(r["text"], None, (), "") for r in make_sentences(30)]
    features = task.encode(examples, tokenizer, max_length=16)
    assert all(len(f["input_ids"]) == 16 for f in features[:-1])
    total = sum(len(tokenizer(e.text, add_special_tokens=False)["input_ids"]) for e in examples) + len(examples) - 1
    assert sum(len(f["input_ids"]) for f in features) == total - (total % 16 == 1)  # a 1-token tail is dropped


def test_masking_never_touches_special_tokens_and_is_about_15_percent(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = LanguageModeling(LanguageModelingParams(objective="mlm"))
    task.adapt_tokenizer(tokenizer)
    task.objective = "mlm"
    ids = torch.randint(5, len(tokenizer), (64, 32))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    inputs, targets = task._targets({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.Generator().manual_seed(1))
    chosen = targets != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert 0.12 < chosen.float().mean() < 0.18
    masked = inputs["input_ids"] == tokenizer.mask_token_id
    assert 0.7 < (masked & chosen).sum() / chosen.sum() < 0.9
    assert torch.equal(targets[chosen], ids[chosen])


def write_texts(path, count, seed):
    path.write_text("".join(r["text"] + "\n" for r in make_sentences(count, seed)))
    return path


@pytest.mark.parametrize("streaming", [[], ["data.streaming=true", "data.shuffle_buffer=100"]])
def test_masked_lm_continued_pretraining(tmp_path, tiny_bert, capsys, streaming):
    train, dev = write_texts(tmp_path / "train.txt", 300, 0), write_texts(tmp_path / "dev.txt", 40, 1)
    run = tmp_path / "run"
    assert main(["train", "task=language-modeling", f"model={tiny_bert}", f"data.train={train}", f"data.validation={dev}",
                 "data.max_length=32", "train.epochs=3", "train.lr=3e-3", "train.batch_size=8",
                 "train.tensorboard=false", f"train.output_dir={run}", *streaming]) == 0
    history = [json.loads(line)["validation"] for line in (run / "metrics.jsonl").read_text().splitlines()
               if "validation" in line]
    assert history[-1]["loss"] < history[0]["loss"]
    report = json.loads((run / "report.json").read_text())
    assert report["perplexity"] > 1 and report["tokens_scored"] > 0
    assert (run / "model" / "model.safetensors").is_file()


def test_causal_lm_continued_pretraining(tmp_path, tiny_bert, capsys):
    decoder = tmp_path / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(decoder)
    tokenizer.save_pretrained(decoder)
    train = write_texts(tmp_path / "train.txt", 300, 0)
    run = tmp_path / "run"
    assert main(["train", "task=language-modeling", f"model={decoder}", f"data.train={train}", "data.max_length=32",
                 "train.epochs=2", "train.lr=3e-3", "train.batch_size=8", "train.tensorboard=false",
                 f"train.output_dir={run}"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["perplexity"] < 60  # the toy language has a vocabulary of ~30 words


def test_an_empty_split_encodes_to_no_features(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    for packing in (True, False):  # no validation split (data.validation_fraction=0) trains without one
        task = LanguageModeling(LanguageModelingParams(packing=packing))
        task.adapt_tokenizer(tokenizer)
        assert task.encode([], tokenizer, 32) == []
