"""Where the data comes from and how it is read."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: str | None = Field(None, description="Training file (.jsonl, .csv or .tsv).")
    validation: str | None = Field(None, description="Validation file; split off `train` when absent.")
    test: str | None = Field(None, description="Test file; split off `train` when `test_fraction` > 0.")
    format: Literal["auto", "jsonl", "csv", "tsv"] = Field("auto", description="File format; auto uses the extension.")
    text_column: str = Field("text", description="Column holding the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    label_column: str = Field("label", description="Column holding the label (a list or separated string for multi-label).")
    labels: list[str] | None = Field(None, description="Explicit label set; inferred from the training file when absent.")
    label_separator: str | None = Field(None, description="Separator for multi-label labels stored as one string, e.g. ','.")
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train split off as validation when no file is given.")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of train split off as test when no file is given.")
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows.")
    max_length: int = Field(128, gt=0, description="Truncate inputs to this many tokens.")
    on_error: Literal["raise", "skip"] = Field("raise", description="On a malformed row: stop with an error, or skip it and report the count.")
