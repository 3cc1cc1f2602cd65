"""Relation extraction: entity markers (inline or spans), missing markers, the marker-state head, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from lmforge.cli import main
from lmforge.data.errors_policy import RowErrors
from lmforge.data.relations import mark_spans, read_relations
from lmforge.errors import DataError
from lmforge.tasks.relation_extraction import RelationExtraction, RelationExtractionParams


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_inline_markers_and_spans_give_the_same_text(tmp_path):
    path = write(tmp_path / "re.jsonl", [
        {"text": "<e1>Paris</e1> is in <e2>France</e2>", "label": "located_in"},
        {"text": "Paris is in France", "head": {"start": 0, "end": 5}, "tail": {"start": 12, "end": 18}, "label": "located_in"},
    ])
    first, second = read_relations(path, "text", "label", RowErrors())
    assert first.text == second.text == "[E1] Paris [/E1] is in [E2] France [/E2]"
    assert mark_spans("ab", (0, 1), (1, 2)) == "[E1] a [/E1][E2] b [/E2]"


@pytest.mark.parametrize(("row", "problem"), [
    ({"text": "<e1>Paris</e1> is in France", "label": "x"}, "entity marker <e2> missing"),
    ({"text": "Paris is in France", "head": {"start": 0, "end": 5}, "label": "x"}, "'tail' must be"),
    ({"text": "Paris", "head": {"start": 0, "end": 5}, "tail": {"start": 3, "end": 9}, "label": "x"}, "outside the text"),
    ({"text": "<e1>a</e1> <e2>b</e2>"}, "missing label"),
])
def test_bad_rows_name_the_line(tmp_path, row, problem):
    path = write(tmp_path / "re.jsonl", [{"text": "<e1>a</e1> <e2>b</e2>", "label": "x"}, row])
    with pytest.raises(DataError, match=rf"{path}, line 2: .*{problem}"):
        read_relations(path, "text", "label", RowErrors())


def test_head_reads_the_marker_states(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    task = RelationExtraction(RelationExtractionParams(), ["a", "b", "no_relation"])
    task.adapt_tokenizer(tokenizer)
    model = task.build_model(str(tiny_bert), True, False).eval()
    batch = tokenizer(["[E1] superb [/E1] film [E2] plot [/E2]"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        states = model.encoder(**batch).last_hidden_state[0]
    ids = batch["input_ids"][0].tolist()
    expected = model.classifier(torch.cat([states[ids.index(task.marker_ids[0])], states[ids.index(task.marker_ids[2])]]))
    assert torch.allclose(logits[0], expected, atol=1e-5)


def test_micro_f1_leaves_out_no_relation():
    task = RelationExtraction(RelationExtractionParams(), ["a", "no_relation"])
    from lmforge.data.relations import RelationExample

    gold = [RelationExample("t", label, "") for label in ["a", "no_relation", "no_relation"]]
    scores = task.score([{"label": "a"}, {"label": "a"}, {"label": "no_relation"}], gold, gold)
    assert scores["micro_precision"] == 0.5 and scores["micro_recall"] == 1.0 and scores["accuracy"] == pytest.approx(2 / 3)


def test_relation_extraction_trains_and_saves_a_loadable_encoder(tmp_path, tiny_bert, capsys):
    relation = {"superb": "praises", "awful": "criticises", "lovely": "no_relation", "dull": "no_relation"}
    words = list(relation)
    rows = []
    for i in range(240):
        head, tail = words[i % 4], words[(i // 4) % 4]  # the label depends on the [E1] word only
        rows.append({"text": f"the <e2>{tail}</e2> plot and the <e1>{head}</e1> film", "label": relation[head]})
    data = write(tmp_path / "re.jsonl", rows)
    run = tmp_path / "run"
    assert main(["train", "task=relation-extraction", f"model={tiny_bert}", f"data.train={data}", "train.epochs=6",
                 "train.lr=3e-3", "train.batch_size=16", "train.tensorboard=false", f"train.output_dir={run}"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["micro_f1"] > 0.8
    AutoModel.from_pretrained(run / "model")  # the encoder loads with plain transformers
    assert "[E1]" in AutoTokenizer.from_pretrained(run / "model").get_vocab()
    queries = write(tmp_path / "q.jsonl", [{"text": "the <e1>lovely</e1> film and the <e2>dull</e2> plot"}])
    assert main(["predict", str(run), "--input", str(queries)]) == 0
    prediction = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert prediction["label"] in {"praises", "criticises", "no_relation"} and "[E1]" in prediction["text"]
