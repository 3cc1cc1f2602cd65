"""Extractive QA: offsets on unicode contexts, windows that cut an answer, bad data, and the CLI path."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from lmforge.cli import main
from lmforge.data.squad import QAExample, read_qa
from lmforge.errors import DataError
from lmforge.tasks.question_answering import QuestionAnswering, QuestionAnsweringParams, span_positions


def fake_outputs(features, example: QAExample):
    """Logits that point at the gold span in the windows that hold it, and at [CLS] elsewhere."""
    outputs = []
    for feature in features:
        logits = torch.full((len(feature["input_ids"]), 2), -10.0)
        logits[feature["start_positions"], 0] = 10.0
        logits[feature["end_positions"], 1] = 10.0
        if feature["start_positions"] == 0:
            logits[0] = 1.0
        outputs.append(logits)
    return outputs


def test_offsets_map_back_to_the_exact_answer_in_unicode_text(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    context = "Zoë flew from Zürich to São Paulo — a superb film."
    start = context.index("São Paulo")
    example = QAExample("1", "where to?", context, [("São Paulo", start)], "x")
    task = QuestionAnswering(QuestionAnsweringParams())
    features = task.encode([example], tokenizer, max_length=64)
    assert len(features) == 1
    prediction = task.decode(fake_outputs(features, example), features, [example])[0]
    assert prediction["answer"] == "São Paulo"
    assert (prediction["start"], prediction["end"]) == (start, start + len("São Paulo"))


def test_windows_that_cut_the_answer_point_at_cls_and_another_window_finds_it(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = QuestionAnswering(QuestionAnsweringParams(doc_stride=8))
    answer = "superb lovely story"
    for filler in range(1, 40):  # slide the answer until a window boundary falls inside it
        context = " ".join(["the film"] * filler) + f" {answer} " + " ".join(["and the plot"] * 12)
        start = context.index(answer)
        example = QAExample("1", "what?", context, [(answer, start)], "x")
        features = task.encode([example], tokenizer, max_length=32)
        holding = [f for f in features if f["start_positions"] != 0]
        cut = [f for f in features if f["start_positions"] == 0 and any(
            o and start <= o[0] < start + len(answer) for o in f["_offsets"] if o)]  # part of the answer, not all
        if holding and cut:
            break
    assert holding and cut, "no window boundary ever fell inside the answer"
    for f in holding:
        offsets = f["_offsets"]
        assert context[offsets[f["start_positions"]][0]:offsets[f["end_positions"]][1]] == answer
    assert task.decode(fake_outputs(features, example), features, [example])[0]["answer"] == answer


def test_span_positions_edge_cases():
    offsets = [None, (0, 3), (4, 9), (10, 15), None]
    assert span_positions(offsets, 0, 3) == (1, 1)
    assert span_positions(offsets, 4, 15) == (2, 3)
    assert span_positions(offsets, 12, 20) == (0, 0)  # runs past the window


def test_answer_not_in_context_names_the_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "context": "a fine film", "answers": [{"text": "fine", "answer_start": 2}]})
                    + "\n" + json.dumps({"question": "q", "context": "a fine film", "answers": ["dull"]}) + "\n")
    with pytest.raises(DataError, match=rf"{path}, line 2: answer 'dull' is not in its context"):
        read_qa(path)


def test_answers_as_text_are_located_whitespace_insensitively(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "context": "it was a  fine\nfilm", "answers": ["fine film"]}) + "\n"
                    + json.dumps({"question": "q", "context": "some 40 , 000 people", "answers": ["40,000"]}) + "\n"
                    + json.dumps({"question": "q", "context": "no idea", "answers": ["unknown"]}) + "\n")
    first, second, third = read_qa(path, no_answer="unknown")
    assert first.answers == [("fine\nfilm", 10)] and second.answers == [("40 , 000", 5)] and third.answers == []


def test_squad_v2_json(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "a", "question": "what?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "b", "question": "who?", "answers": [], "is_impossible": True}]}]}]}))
    examples = read_qa(path)
    assert [(e.id, e.answers) for e in examples] == [("a", [("Paris", 0)]), ("b", [])]


def test_qa_trains_evaluates_and_predicts(tmp_path, tiny_bert, capsys):
    rows = []
    for i in range(120):
        word = ["superb", "awful", "lovely", "dull"][i % 4]
        context = f"the film was {word} and the plot was quite boring"
        rows.append({"id": str(i), "question": "what was the film?", "context": context,
                     "answers": [{"text": word, "answer_start": context.index(word)}]})
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    assert main(["train", "task=question-answering", f"model={tiny_bert}", f"data.train={data}", "train.epochs=3",
                 "train.lr=3e-3", "train.batch_size=16", "train.tensorboard=false", f"train.output_dir={run}"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert {"exact_match", "f1", "count"} <= set(report) and report["count"] == 12
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "what was the film?", "context": "the film was lovely"}) + "\n")
    assert main(["predict", str(run), "--input", str(questions)]) == 0
    prediction = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"id", "question", "answer", "start", "end", "score"} == set(prediction)
    from fastapi.testclient import TestClient

    from lmforge.runs.served_task import served_task
    from lmforge.serve.app import create_app
    with TestClient(create_app(served_task(run, "qa"))) as client:  # the run served on /v1/qa
        answer = client.post("/v1/qa", json={"model": "qa", "input": {"question": "what was the film?",
                                                                      "context": "the film was lovely"}})
    assert answer.status_code == 200 and answer.json()["data"][0]["answer"] == prediction["answer"]


def test_renamed_columns_and_single_string_answers(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"passage": "a superb film", "question": "q", "answer": "superb"}) + "\n"
                    + json.dumps({"passage": "a superb film", "question": "q", "answer": ""}) + "\n")
    examples = read_qa(path, columns=("question", "passage", "answer"))
    assert [e.answers for e in examples] == [[("superb", 2)], []]
