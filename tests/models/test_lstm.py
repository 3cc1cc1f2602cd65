"""The from-scratch LSTM baseline: its word tokenizer, both heads, and training through the CLI."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.models.lstm import LstmParams, build_lstm_dir, build_word_tokenizer


def test_word_tokenizer_maps_unseen_words_to_unk():
    tokenizer = build_word_tokenizer(["a fine film", "a dull film."], LstmParams())
    ids = tokenizer("a fine, unseen film")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["a", "fine", "[UNK]", "[UNK]", "film"]
    assert tokenizer.pad_token_id == 0


def test_min_count_and_lowercase():
    tokenizer = build_word_tokenizer(["Film film FILM rare"], LstmParams(min_count=2, lowercase=True))
    assert tokenizer.convert_ids_to_tokens(tokenizer("film rare")["input_ids"]) == ["film", "[UNK]"]


def test_both_heads_load_the_same_weights(tmp_path):
    folder = build_lstm_dir(["a fine film", "a dull film"], LstmParams(hidden_size=8, embedding_dim=4), 3, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["a fine film", "film"], return_tensors="pt", padding=True)
    sequence = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokens = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        assert sequence(**batch).logits.shape == (2, 3)
        assert tokens(**batch).logits.shape == (2, 3, 3)
        # padding never changes a sequence's result
        alone = sequence(**tokenizer(["film"], return_tensors="pt")).logits
        assert torch.allclose(alone[0], sequence(**batch).logits[1], atol=1e-6)


def test_lstm_baseline_trains_through_the_cli(tmp_path, sentiment_files, capsys):
    run = tmp_path / "run"
    assert main(["train", "task=text-classification", "model=lstm", "model.lstm.hidden_size=32",
                 f"data.train={sentiment_files['train']}", f"data.validation={sentiment_files['validation']}",
                 "train.epochs=3", "train.lr=3e-3", "train.batch_size=16", "train.tensorboard=false",
                 f"train.output_dir={run}"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["accuracy"] > 0.9
    assert main(["predict", str(run), "--input", str(sentiment_files["validation"])]) == 0
    assert '"probabilities"' in capsys.readouterr().out
