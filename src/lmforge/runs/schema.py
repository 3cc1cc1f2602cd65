"""The run config: one section per package, each validated by that package's own params model."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, field_validator

from lmforge.config.strict import STRICT
from lmforge.config.validate import suggest
from lmforge.data.params import DataParams
from lmforge.methods.registry import TuningParams
from lmforge.models.params import ModelParams
from lmforge.tasks import TASKS
from lmforge.train.params import TrainParams

#: one params model per task, told apart by `name`
TaskParams = Annotated[Union[tuple(params for params, _ in TASKS.values())], Field(discriminator="name")]  # noqa: UP007


class RunConfig(BaseModel):
    """Everything one `lmforge train` run needs; saved as <run>/config.yaml."""

    model_config = STRICT

    task: TaskParams = Field(..., description="The task (a name, or a mapping with `name:` and the task's options).")
    model: ModelParams = Field(..., description="The pretrained model (a reference, or a mapping with `name:`).")
    data: DataParams = Field(default_factory=DataParams, description="Where the data is and how to read it.")
    train: TrainParams = Field(default_factory=TrainParams, description="How to train.")
    tuning: TuningParams = Field(default_factory=TuningParams, description="What trains: everything (default), "
                                                                             "a frozen body, or a PEFT adapter.")

    @field_validator("task", mode="before")
    @classmethod
    def _task_by_name(cls, value: Any) -> Any:
        value = {"name": value} if isinstance(value, str) else value
        if isinstance(value, dict):
            name = value.get("name")
            if name not in TASKS:
                raise ValueError(f"'{name}' is unknown; choose one of: {', '.join(sorted(TASKS))}"
                                 f"{suggest(str(name), list(TASKS))}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value
