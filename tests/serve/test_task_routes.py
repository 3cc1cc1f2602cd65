"""Task endpoints: a text-classification run answers /v1/classify with labels and probabilities."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lmforge.cli import main
from lmforge.runs.served_task import served_task
from lmforge.serve.app import create_app


@pytest.fixture
def classify_client(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config)]) == 0
    capsys.readouterr()
    with TestClient(create_app(served_task(tmp_path / "run", "sentiment"))) as client:
        yield client


def test_classify_answers_with_labels_and_probabilities(classify_client):
    response = classify_client.post("/v1/classify", json={"model": "sentiment", "input": ["a great film", "awful"]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2 and all(row["label"] in row["probabilities"] for row in data)
    assert abs(sum(data[0]["probabilities"].values()) - 1) < 1e-4
    assert classify_client.get("/v1/models").json()["data"][0]["task"] == "text-classification"
    bad = classify_client.post("/v1/classify", json={"model": "sentiment", "input": []})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert classify_client.post("/v1/classify", json={"model": "other", "input": "x"}).status_code == 404
    assert classify_client.post("/v1/chat/completions", json={"model": "sentiment", "messages": []}).status_code == 404
