"""Tiny models built from configs, with tokenizers trained on the fly, and small data files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "excellent", "nice"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible", "sad", "boring", "weak"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "plot", "and", "it", "very", "quite", "of", "this"]


def make_sentences(count: int, seed: int = 0) -> list[dict]:
    """Rows {text, label} whose label is given by a sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece tokenizer trained on the test vocabulary."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    corpus = [" ".join(POSITIVE + NEGATIVE + FILLER)] * 10 + [r["text"] for r in make_sentences(200, seed=1)]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials, show_progress=False))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    fast.save_pretrained(folder)
    config = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=fast.pad_token_id)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def sentiment_files(tmp_path) -> dict[str, Path]:
    """train/validation jsonl files of the toy sentiment task."""
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", make_sentences(400, seed=2)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", make_sentences(40, seed=3)),
    }


@pytest.fixture
def tiny_config(tmp_path, tiny_bert, sentiment_files) -> Path:
    """A complete config for a few-second run on the tiny model."""
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "task: text-classification\n"
        f"model: {tiny_bert}\n"
        "data:\n"
        f"  train: {sentiment_files['train']}\n"
        f"  validation: {sentiment_files['validation']}\n"
        "  max_length: 32\n"
        "train:\n"
        f"  output_dir: {tmp_path / 'run'}\n"
        "  epochs: 2\n"
        "  batch_size: 16\n"
        "  lr: 3.0e-3\n"
        "  tensorboard: false\n", encoding="utf-8")
    return path
