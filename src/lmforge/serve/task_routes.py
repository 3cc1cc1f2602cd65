"""Endpoints for runs of the non-generating tasks: /v1/classify, /v1/ner, /v1/qa, /v1/score (relevance scoring's
{query, candidate} pairs, a reward model's {prompt, completion}).

The run's own predict path answers (labels with probabilities, entities, answer spans, rewards); requests run
in a worker thread one at a time, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from fastapi import FastAPI
from pydantic import Field, field_validator

from lmforge.errors import LmforgeError
from lmforge.models.openmp import one_call_at_a_time
from lmforge.serve.schemas import ApiModel
from lmforge.serve.task_kinds import TASK_ENDPOINTS, ServedTask

MAX_INPUTS = 256


class TextsRequest(ApiModel):
    model: str = Field(..., min_length=1)
    input: str | list[str] = Field(..., description="A text or a list of texts.")

    def rows(self) -> list[str]:
        rows = [self.input] if isinstance(self.input, str) else self.input
        if not rows or any(not r.strip() for r in rows) or len(rows) > MAX_INPUTS:
            raise ValueError(f"input: give 1 to {MAX_INPUTS} non-empty texts")
        return rows


class QAItem(ApiModel):
    question: str = Field(..., min_length=1)
    context: str = Field(..., min_length=1)


class PairItem(ApiModel):
    query: str = Field(..., min_length=1)
    candidate: str = Field(..., min_length=1)


class Turn(ApiModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class RewardItem(ApiModel):
    prompt: str | list[Turn] = Field(..., description="The prompt: a text, or OpenAI messages (the conversation so far).")
    completion: str = Field(..., min_length=1)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("give a non-empty prompt")
        return value


class ObjectsRequest(ApiModel):
    """{model, input}: one input object or a list of them; errors name the field (input.N.field)."""

    described: ClassVar[str]

    model: str = Field(..., min_length=1)

    @field_validator("input", mode="before", check_fields=False)
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    def rows(self) -> list[dict]:
        items = self.input  # type: ignore[attr-defined]
        if not items or len(items) > MAX_INPUTS:
            raise ValueError(f"input: give 1 to {MAX_INPUTS} {self.described} objects")
        return [item.model_dump() for item in items]


class QARequest(ObjectsRequest):
    described: ClassVar[str] = "{question, context}"
    input: list[QAItem] = Field(..., description="A {question, context} object or a list of them.")


class PairsRequest(ObjectsRequest):
    described: ClassVar[str] = "{query, candidate}"
    input: list[PairItem] = Field(..., description="A {query, candidate} object or a list of them.")


class RewardRequest(ObjectsRequest):
    described: ClassVar[str] = "{prompt, completion}"
    input: list[RewardItem] = Field(..., description="A {prompt, completion} object or a list of them.")


#: a served run's task -> its request body, where it is not the endpoint's texts
BODIES: dict[str, type[ApiModel]] = {"question-answering": QARequest, "relevance-scoring": PairsRequest,
                                     "reward-modeling": RewardRequest}


def add_task_routes(app: FastAPI, served: ServedTask, bad_request: Callable[..., Exception]) -> None:
    """The endpoint of `served.task` (POST /v1/<endpoint>, body {model, input}); data: one prediction per input."""
    endpoint = TASK_ENDPOINTS[served.task]
    body_model = BODIES.get(served.task, TextsRequest)
    run = one_call_at_a_time(served.predict)

    async def answer(body: body_model) -> dict:  # type: ignore[valid-type]
        if body.model != served.name:
            raise bad_request(f"model {body.model!r} is not served here; this server serves {served.name!r}", "model",
                              404, "model_not_found")
        try:
            rows = body.rows()
        except ValueError as error:
            raise bad_request(str(error), "input") from None
        try:
            predictions = await asyncio.to_thread(run, rows)
        except LmforgeError as error:
            raise bad_request(str(error), "input") from None
        return {"object": "list", "model": served.name, "task": served.task, "data": predictions}

    answer.__annotations__ = {"body": body_model, "return": dict}  # resolved now, not from a string
    app.post(f"/v1/{endpoint}")(answer)
