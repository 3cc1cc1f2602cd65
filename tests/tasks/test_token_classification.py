"""NER: sub-word label alignment, strided windows that rejoin, entity spans, and training end to end."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from lmforge.cli import main
from lmforge.data.conll import TaggedSentence, split_words
from lmforge.tasks.token_classification import TokenClassification, TokenClassificationParams, align_labels

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_alignment_labels_first_subtoken_only():
    # word 0 splits into three pieces, word 1 is one piece
    assert align_labels([None, 0, 0, 0, 1, None], [1, 3], LABELS, label_all=False) == [-100, 1, -100, -100, 3, -100]


def test_alignment_can_label_every_subtoken_as_inside():
    assert align_labels([None, 0, 0, 0, 1, None], [1, 0], LABELS, label_all=True) == [-100, 1, 2, 2, 0, -100]


def test_word_split_into_many_pieces(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = TokenClassification(TokenClassificationParams(), LABELS)
    sentence = TaggedSentence(["filmsuperbplot", "superb"], ["B-PER", "O"], "")  # many word pieces, then 1
    feature = task.encode([sentence], tokenizer, max_length=32)[0]
    pieces = feature["_word_ids"].count(0)
    assert pieces == len(tokenizer.tokenize("filmsuperbplot")) > 2 and feature["_word_ids"].count(1) == 1
    labelled = [label for label in feature["labels"] if label != -100]
    assert labelled == [1, 0]


def test_long_sentences_are_windowed_and_rejoined(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = TokenClassification(TokenClassificationParams(stride=4), LABELS)
    words = (["superb", "film"] * 20)[:37]
    tags = ["B-PER" if i % 5 == 0 else "O" for i in range(37)]
    sentence = TaggedSentence(words, tags, "")
    features = task.encode([sentence], tokenizer, max_length=12)
    assert len(features) > 3 and all(len(f["input_ids"]) <= 12 for f in features)
    covered = {w for f in features for w in f["_word_ids"] if w is not None}
    assert covered == set(range(37))
    # Fake outputs that put each window's gold label at its first sub-tokens: rejoining must give the gold tags.
    outputs = []
    for feature in features:
        logits = torch.zeros(len(feature["input_ids"]), len(LABELS))
        for position, word in enumerate(feature["_word_ids"]):
            if word is not None:
                logits[position, LABELS.index(tags[word])] = 5.0
        outputs.append(logits)
    prediction = task.decode(outputs, features, [sentence])[0]
    assert prediction["tags"] == tags


def test_entities_have_character_offsets():
    task = TokenClassification(TokenClassificationParams(), LABELS)
    sentence = split_words("Zoë met Ana Lima in São Paulo.", "")
    tags = ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    logits = torch.full((len(tags) + 2, len(LABELS)), -5.0)
    for i, tag in enumerate(tags):
        logits[i + 1, LABELS.index(tag)] = 5.0
    feature = {"input_ids": [0] * (len(tags) + 2), "_example": 0, "_word_ids": [None, *range(len(tags)), None]}
    entities = task.decode([logits], [feature], [sentence])[0]["entities"]
    assert [(e["type"], e["text"]) for e in entities] == [("PER", "Zoë"), ("PER", "Ana Lima"), ("LOC", "São Paulo")]
    assert all(sentence.text[e["start"]:e["end"]] == e["text"] for e in entities)


def test_score_is_entity_level():
    task = TokenClassification(TokenClassificationParams(), LABELS)
    gold = [TaggedSentence(["a", "b", "c"], ["B-PER", "I-PER", "B-LOC"], "")]
    scores = task.score([{"tags": ["B-PER", "O", "B-LOC"]}], gold, gold)
    assert scores["f1"] == pytest.approx(0.5) and scores["token_accuracy"] == pytest.approx(2 / 3)
    assert set(scores["per_class"]) == {"PER", "LOC"}


def write_conll(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True))
                                for words, tags in sentences) + "\n")
    return path


def toy_ner(count, seed):
    import random

    rng = random.Random(seed)
    first, last = ["superb", "lovely"], ["happy", "great"]
    places, filler = ["awful", "dull", "sad"], ["the", "film", "was", "with", "and"]
    sentences = []
    for _ in range(count):
        words, tags = [], []
        for _ in range(rng.randint(3, 8)):
            kind = rng.random()
            if kind < 0.2:
                words += [rng.choice(first), rng.choice(last)]
                tags += ["B-PER", "I-PER"]
            elif kind < 0.35:
                words.append(rng.choice(places))
                tags.append("B-LOC")
            else:
                words.append(rng.choice(filler))
                tags.append("O")
        sentences.append((words, tags))
    return sentences


def test_ner_trains_evaluates_and_predicts(tmp_path, tiny_bert, capsys):
    train = write_conll(tmp_path / "train.txt", toy_ner(300, 0))
    dev = write_conll(tmp_path / "dev.txt", toy_ner(40, 1))
    run = tmp_path / "run"
    assert main(["train", "task=token-classification", f"model={tiny_bert}", f"data.train={train}",
                 f"data.validation={dev}", "train.epochs=4", "train.lr=3e-3", "train.batch_size=16",
                 "train.tensorboard=false", f"train.output_dir={run}"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["f1"] > 0.8 and set(report["per_class"]) == {"PER", "LOC"}
    assert main(["evaluate", str(run), "--data", str(dev)]) == 0
    out = tmp_path / "pred.jsonl"
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "the lovely superb film was dull"}) + "\n")
    assert main(["predict", str(run), "--input", str(tmp_path / "in.jsonl"), "--output", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["text"] == "the lovely superb film was dull"
    from fastapi.testclient import TestClient

    from lmforge.runs.served_task import served_task
    from lmforge.serve.app import create_app
    with TestClient(create_app(served_task(run, "ner"))) as client:  # the run served on /v1/ner
        answer = client.post("/v1/ner", json={"model": "ner", "input": "the lovely superb film was dull"})
    assert answer.status_code == 200 and answer.json()["data"][0] == row
    assert {"type", "text", "start", "end", "score"} <= set(row["entities"][0])
