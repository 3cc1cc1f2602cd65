"""POST /v1/embeddings, as OpenAI's API has it, for encoder runs and encoder models: mean-pooled, unit-length
sentence vectors (float lists, or base64 of little-endian float32 with encoding_format=base64)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Literal

from fastapi import FastAPI
from pydantic import Field

from lmforge.models.openmp import one_call_at_a_time
from lmforge.serve.schemas import ApiModel

MAX_INPUTS = 256


class EmbeddingsRequest(ApiModel):
    model: str = Field(..., min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(..., description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)
    user: str | None = None


def add_embedding_route(app: FastAPI, name: str, embedder, bad_request: Callable[..., Exception]) -> None:
    """/v1/embeddings over `embedder` (a SentenceEncoder), one request at a time."""
    @one_call_at_a_time
    def run(texts: list[str]) -> tuple[list[list[float]], int]:
        return embedder.encode(texts).tolist(), embedder.count_tokens(texts)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> dict:
        if body.model != name:
            raise bad_request(f"model {body.model!r} is not served here; this server serves {name!r}", "model", 404,
                              "model_not_found")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise bad_request("input: give a text or a list of texts (token-id arrays are not accepted)", "input")
        if len(texts) > MAX_INPUTS or any(not t.strip() for t in texts):
            raise bad_request(f"input: give 1 to {MAX_INPUTS} non-empty texts", "input")
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise bad_request(f"dimensions: this model gives {embedder.dimensions}-dimensional embeddings; omit "
                              "dimensions or ask for that", "dimensions")
        vectors, tokens = await asyncio.to_thread(run, texts)
        if body.encoding_format == "base64":
            import numpy as np

            encoded = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        else:
            encoded = vectors
        return {"object": "list", "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)]}
