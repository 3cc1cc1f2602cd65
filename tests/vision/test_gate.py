"""Image-text data files and the relevance gate: fitting, thresholds, saving, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from lmforge.cli import main
from lmforge.errors import DataError
from lmforge.vision.data import ImageText, read_image_text
from lmforge.vision.gate import RelevanceGate, fit_gate, with_shuffled_negatives


def test_read_jsonl_and_folder_with_captions_tsv(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"image": "a.png", "text": "a red square"}\n\n'
                                          '{"image": "b.png", "caption": "blue", "relevant": false}\n')
    rows = read_image_text(tmp_path / "pairs.jsonl")
    assert rows == [ImageText(tmp_path / "a.png", "a red square"), ImageText(tmp_path / "b.png", "blue", False)]
    (tmp_path / "captions.tsv").write_text("a.png\tone\na.png\ttwo\n")
    assert [r.text for r in read_image_text(tmp_path)] == ["one", "two"]


@pytest.mark.parametrize("line, message", [
    ('{"text": "x"}', "pairs.jsonl:1: missing 'image'"),
    ('{"image": "a.png"}', "pairs.jsonl:1: missing 'text'"),
    ('{"image": "a.png", "text": "x", "relevant": "yes"}', "'relevant' must be true or false"),
    ("{not json", "pairs.jsonl:1: not valid JSON"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    (tmp_path / "pairs.jsonl").write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        read_image_text(tmp_path / "pairs.jsonl")


def test_folder_without_captions_file_is_explained(tmp_path):
    with pytest.raises(DataError, match="needs captions.jsonl or captions.tsv"):
        read_image_text(tmp_path)


def test_shuffled_negatives_pair_each_text_with_another_image(tmp_path):
    rows = [ImageText(tmp_path / f"{n}.png", f"text {n}") for n in range(3)]
    negatives = with_shuffled_negatives(rows)[3:]
    assert len(negatives) == 3 and not any(r.relevant for r in negatives)
    assert all(neg.image != row.image and neg.text == row.text for neg, row in zip(negatives, rows, strict=True))
    with pytest.raises(DataError, match="at least two images"):
        with_shuffled_negatives(rows[:1])


def test_gate_learns_the_direction_and_threshold_moves_the_decision():
    ratings = torch.tensor([3.0, 2.5, 2.0, -1.0, -2.0, 0.0])
    gate = fit_gate(ratings, [True, True, True, False, False, False])
    assert gate.weight > 0
    probabilities = gate.probability(torch.tensor([4.0, -3.0]))
    assert probabilities[0] > 0.5 > probabilities[1]
    middle = float(gate.probability(torch.tensor([1.0])))
    assert RelevanceGate(gate.weight, gate.bias, threshold=middle - 0.01).decide(torch.tensor([1.0]))[0][0] is True
    assert RelevanceGate(gate.weight, gate.bias, threshold=middle + 0.01).decide(torch.tensor([1.0]))[0][0] is False
    with pytest.raises(DataError, match="both relevant and irrelevant"):
        fit_gate(ratings, [True] * 6)


def test_gate_files_round_trip_and_bad_ones_are_explained(tmp_path):
    gate = RelevanceGate(0.5, -1.0, 0.7, "some/clip")
    gate.save(tmp_path / "gate.json")
    assert RelevanceGate.load(tmp_path / "gate.json") == gate
    (tmp_path / "bad.json").write_text('{"weights": 1}')
    with pytest.raises(DataError, match="not a gate file"):
        RelevanceGate.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="gate file not found"):
        RelevanceGate.load(tmp_path / "none.json")


def test_gate_cli_fits_and_generate_reports_the_decision(tmp_path, tiny_clip, tiny_chat_llama, capsys):
    colours = ["red", "blue", "green", "yellow"]
    for colour in colours:
        Image.new("RGB", (16, 16), colour).save(tmp_path / f"{colour}.png")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"image": f"{c}.png", "text": f"a {c} square"}) + "\n"
                                                  for c in colours for _ in range(2)))
    gate_file = tmp_path / "gate.json"
    assert main(["gate", str(tmp_path / "pairs.jsonl"), "--output", str(gate_file), "--scorer", str(tiny_clip)]) == 0
    assert "leave-one-image-out" in capsys.readouterr().out
    assert main(["gate", str(tmp_path / "pairs.jsonl"), "--output", str(gate_file), "--scorer", str(tiny_clip)]) == 2
    assert "exists" in capsys.readouterr().err
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"source": "red dog", "image": "red.png"}) + "\n")
    assert main(["generate", str(tiny_chat_llama), "--input", str(tmp_path / "prompts.jsonl"), "--output",
                 str(tmp_path / "out.jsonl"), "--strategy", "contrastive", "--image-weight", "1", "--image-scorer",
                 str(tiny_clip), "--image-gate", str(gate_file), "--max-new-tokens", "2"]) == 0
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert isinstance(row["image_relevant"], bool) and 0.0 <= row["image_relevance"] <= 1.0
