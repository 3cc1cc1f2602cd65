"""Relevance scoring: ranking metrics by hand, the packaged reply-ranking data, and a tiny run end to end."""

from __future__ import annotations

import json
import random

import pytest
from fastapi.testclient import TestClient

from lmforge.cli import main
from lmforge.data.packaged import chatterbot_reply_relevance
from lmforge.metrics.ranking import ranking_metrics
from lmforge.runs.served_task import served_task
from lmforge.serve.app import create_app


def test_ranking_metrics_by_hand():
    queries = ["q", "q", "q", "r", "r", "lonely"]
    relevance = [1, 0, 0, 0, 1, 1]
    scores = [0.2, 0.9, 0.1, 0.3, 0.8, 0.5]
    result = ranking_metrics(queries, relevance, scores, ks=[1, 3])
    # q ranks its relevant candidate 2nd of 3: DCG = 1/log2(3), ideal 1; r ranks it 1st; "lonely" has one candidate
    assert result["queries"] == 2
    assert result["ndcg@1"] == pytest.approx((0 + 1) / 2)
    assert result["ndcg@3"] == pytest.approx((1 / 1.5849625 + 1) / 2, rel=1e-6)
    # AUC: 3 relevant × 3 irrelevant pairs; relevant scores 0.2, 0.8, 0.5 beat 0.1 / 0.1, 0.3 / 0.1, 0.3
    assert result["auc"] == pytest.approx(5 / 9)
    assert ranking_metrics(["a", "a"], [0, 0], [0.1, 0.2])["auc"] is None  # one class: undefined, not a crash


def test_packaged_reply_ranking_keeps_each_query_in_one_split():
    pytest.importorskip("chatterbot_corpus", reason="chatterbot-corpus is not installed")
    splits = {name: chatterbot_reply_relevance(name) for name in ("train", "validation", "test")}
    for rows in splits.values():
        assert len(rows) % 5 == 0
        for start in range(0, len(rows), 5):
            group = rows[start:start + 5]
            assert [r["label"] for r in group] == ["relevant"] + ["irrelevant"] * 4
            assert len({r["text"] for r in group}) == 1 and len({r["text_pair"] for r in group}) == 5
    assert 0.75 < len(splits["train"]) / sum(len(r) for r in splits.values()) < 0.85


def write_pairs(path, count: int, seed: int) -> None:
    """Two-word queries, each with one relevant candidate (it says "big") and three irrelevant ones ("small")."""
    rng = random.Random(seed)
    words = ["red", "blue", "dog", "cat", "runs", "sleeps", "green", "eats"]
    with path.open("w", encoding="utf-8") as out:
        for _ in range(count):
            query = " ".join(rng.sample(words, 2))
            out.write(json.dumps({"query": query, "item": f"{rng.choice(words)} big", "label": "relevant"}) + "\n")
            for _ in range(3):
                out.write(json.dumps({"query": query, "item": f"{rng.choice(words)} small", "label": "irrelevant"}) + "\n")


def test_a_tiny_run_learns_to_rank_and_reports_auc_and_ndcg(tmp_path, tiny_bert, capsys):
    write_pairs(tmp_path / "train.jsonl", 200, 0)
    write_pairs(tmp_path / "validation.jsonl", 20, 2)
    write_pairs(tmp_path / "test.jsonl", 20, 1)
    config = tmp_path / "relevance.yaml"
    config.write_text(
        "task: {name: relevance-scoring, ndcg_at: [1, 4]}\n"
        f"model: {tiny_bert}\n"
        f"data: {{train: {tmp_path / 'train.jsonl'}, validation: {tmp_path / 'validation.jsonl'},\n"
        f"       test: {tmp_path / 'test.jsonl'}, text_column: query,\n"
        "       text_pair_column: item, max_length: 16}\n"
        f"train: {{output_dir: {tmp_path / 'run'}, epochs: 8, batch_size: 16, lr: 3.0e-3, tensorboard: false}}\n",
        encoding="utf-8")
    assert main(["evaluate", str(config), "--output", str(tmp_path / "before")]) == 0
    before = json.loads((tmp_path / "before" / "report.json").read_text())
    assert main(["train", str(config)]) == 0
    after = json.loads((tmp_path / "run" / "report.json").read_text())
    queries = {json.loads(line)["query"] for line in (tmp_path / "test.jsonl").read_text().splitlines()}
    assert after["split"] == "test" and after["queries"] == len(queries)
    assert after["auc"] > max(0.8, before["auc"] + 0.1) and after["ndcg@4"] > before["ndcg@4"]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "test.jsonl"),
                 "--output", str(tmp_path / "scores.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and all(0 <= row["relevance"] <= 1 for row in rows)
    with TestClient(create_app(served_task(tmp_path / "run", "ranker"))) as client:  # served on /v1/score
        pairs = [{"query": "red dog", "candidate": "cat big"}, {"query": "red dog", "candidate": "cat small"}]
        scored = client.post("/v1/score", json={"model": "ranker", "input": pairs}).json()["data"]
        bad = client.post("/v1/score", json={"model": "ranker", "input": [{"query": "q"}]})
        page = client.get("/").text
    assert scored[0]["relevance"] > scored[1]["relevance"]
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "input.0.candidate: Field required"
    assert '"endpoint": "score"' in page


def test_relevance_needs_a_candidate_column(tmp_path, tiny_bert, capsys):
    write_pairs(tmp_path / "train.jsonl", 10, 0)
    config = tmp_path / "relevance.yaml"
    config.write_text(f"task: relevance-scoring\nmodel: {tiny_bert}\ndata: {{train: {tmp_path / 'train.jsonl'}, "
                      f"text_column: query}}\ntrain: {{output_dir: {tmp_path / 'run'}}}\n", encoding="utf-8")
    assert main(["train", str(config)]) != 0
    assert "data.text_pair_column" in capsys.readouterr().err
