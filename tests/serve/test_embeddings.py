"""/v1/embeddings for encoder runs and encoder models: OpenAI's shape (the official client reads it), unit-length
mean-pooled vectors, base64 encoding, and 400s naming the field for what it cannot do."""

from __future__ import annotations

import base64

import numpy as np
import openai
from fastapi.testclient import TestClient

from lmforge.cli import main
from lmforge.runs.served_task import served_encoder, served_task
from lmforge.serve.app import create_app
from tests.serve.conftest import running


def test_an_encoder_run_serves_embeddings_beside_its_task(tiny_config, tmp_path):
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'run'}", "train.epochs=1"]) == 0
    with TestClient(create_app(served_task(tmp_path / "run", "sentiment"))) as client:
        answer = client.post("/v1/embeddings", json={"model": "sentiment", "input": ["a lovely plot", "dull actors",
                                                                                      "a lovely plot"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        vectors = np.asarray([row["embedding"] for row in body["data"]])
        assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
        assert body["usage"]["prompt_tokens"] > 0 and [row["index"] for row in body["data"]] == [0, 1, 2]
        packed = client.post("/v1/embeddings", json={"model": "sentiment", "input": "dull actors",
                                                     "encoding_format": "base64"}).json()["data"][0]["embedding"]
        assert np.allclose(np.frombuffer(base64.b64decode(packed), dtype="<f4"), vectors[1], atol=1e-6)
        assert client.post("/v1/classify", json={"model": "sentiment", "input": "a lovely plot"}).status_code == 200
        for bad, field in (({"input": [[1, 2, 3]]}, "input"), ({"input": "x", "dimensions": 8}, "dimensions"),
                           ({"input": ""}, "input")):
            refused = client.post("/v1/embeddings", json={"model": "sentiment", **bad})
            assert refused.status_code == 400 and refused.json()["error"]["param"] == field, refused.text
        assert client.post("/v1/embeddings", json={"model": "other", "input": "x"}).status_code == 404


def test_the_openai_client_reads_embeddings_of_an_encoder_model(tiny_bert, tiny_chat_llama):
    assert served_encoder(str(tiny_chat_llama)) is None  # a text writer is served for generation instead
    encoder = served_encoder(str(tiny_bert), "encoder")
    with running(create_app(encoder)) as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        result = api.embeddings.create(model="encoder", input=["the red dog", "a blue cat"])
    assert [len(item.embedding) for item in result.data] == [32, 32] and result.model == "encoder"
    assert abs(np.linalg.norm(result.data[0].embedding) - 1) < 1e-5
