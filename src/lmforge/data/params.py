"""Where the data comes from and how it is read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT
from lmforge.data.hub import HUB_PREFIX, hub_folder
from lmforge.data.readers import VIRTUAL_PREFIXES
from lmforge.errors import DataError


class DataFile(BaseModel):
    """A split file whose columns are named differently from the `data:` section's defaults."""

    model_config = STRICT

    path: str = Field(..., description="The file (.jsonl, .csv or .tsv).")
    text_column: str | None = Field(None, description="Text column in this file, if not data.text_column.")
    text_pair_column: str | None = Field(None, description="Second text column in this file, if not data.text_pair_column.")
    label_column: str | None = Field(None, description="Label column in this file, if not data.label_column.")
    target_path: str | None = Field(None, description="Generation: a text file aligned line by line with `path` "
                                                      "(parallel corpora such as train.en.gz + train.fr.gz).")


class DataParams(BaseModel):
    model_config = STRICT

    train: str | DataFile | None = Field(None, description="Training file (.jsonl, .csv or .tsv), or {path, text_column, …}.")
    validation: str | DataFile | None = Field(None, description="Validation file; split off `train` when absent.")
    test: str | DataFile | None = Field(None, description="Test file; split off `train` when `test_fraction` > 0.")
    train_extra: list[str | DataFile] = Field(default_factory=list, description="More training files added after the "
                                              "splits are made (e.g. rows from `lmforge augment`); never validation/test.")
    format: Literal["auto", "jsonl", "csv", "tsv", "conll", "parquet", "arrow"] = Field(
        "auto", description="File format; auto uses the extension (.jsonl, .csv, .tsv, .parquet, .arrow, each text "
                            "format optionally .gz/.zst; .conll/.txt for CoNLL columns; a save_to_disk folder is arrow).")
    text_column: str = Field("text", description="Column holding the input text.")
    text_pair_column: str | None = Field(None, description="Optional second text column (sentence pairs).")
    label_column: str = Field("label", description="Column holding the label (a list or separated string for multi-label).")
    labels: list[str] | None = Field(None, description="Explicit label set; inferred from the training file when absent.")
    label_separator: str | None = Field(None, description="Separator for multi-label labels stored as one string, e.g. ','.")
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train split off as validation when no file is given.")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of train split off as test when no file is given.")
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows.")
    max_eval_samples: int | None = Field(None, gt=0, description="Validate on only the first N validation rows "
                                         "(quicker epochs); the test split is untouched.")
    max_length: int = Field(128, gt=0, description="Truncate inputs to this many tokens.")
    on_error: Literal["raise", "skip"] = Field("raise", description="On a malformed row: stop with an error, or skip it and report the count.")
    arrow: bool | Literal["auto"] = Field(
        "auto", description="Text classification: read the training file into a memory-mapped Arrow table and "
                            "tokenise it with datasets' cached map, so its size is bounded by disk, not memory "
                            "(auto: when the file is at least arrow_min_mb).")
    arrow_min_mb: float = Field(64.0, gt=0, description="data.arrow auto: the training file size from which Arrow is used.")
    num_proc: int = Field(1, gt=0, description="Processes tokenising an Arrow training split.")
    streaming: bool = Field(False, description="Read the training file as it is needed instead of whole (files larger "
                                               "than memory): rows counted once, each epoch drawn through a seeded "
                                               "shuffle buffer and tokenised batch by batch; resumable mid-epoch.")
    shuffle_buffer: int = Field(10_000, gt=0, description="data.streaming: rows in the shuffle buffer (larger mixes "
                                                          "better, holds more rows in memory).")
    allow_network: bool = Field(False, description="Let split paths name Hugging Face hub datasets "
                                                   "(hf:namespace/name[:config][@split]), downloaded once and cached.")


def file_params(spec: str | DataFile, params: DataParams) -> tuple[str, DataParams]:
    """(path, params) for one split file, with that file's own column names applied; a hub dataset
    (`hf:…`, with data.allow_network) becomes its cached local folder."""
    if isinstance(spec, str):
        return _local(spec, params), params
    own = {key: value for key, value in spec.model_dump(exclude={"path", "target_path"}).items() if value is not None}
    return _local(spec.path, params), params.model_copy(update=own)


def _local(path: str, params: DataParams) -> str:
    return hub_folder(path, params.allow_network) if path.startswith(HUB_PREFIX) else path


def with_absolute_paths(params: DataParams) -> DataParams:
    """The same params with every split path made absolute, so a saved config works from any folder."""
    updates: dict = {key: _absolute(getattr(params, key)) for key in ("train", "validation", "test")}
    updates["train_extra"] = [_absolute(spec) for spec in params.train_extra]
    return params.model_copy(update=updates)


def _resolved(path: str) -> str:
    """`path` made absolute; a symbolic link that points back at itself is a DataError."""
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError) as error:  # Python raises RuntimeError on a symlink loop
        raise DataError(f"data file {path} cannot be resolved ({error}); a symbolic link on the way loops back on "
                        "itself — point at the real file") from None


def _absolute(spec: str | DataFile | None) -> str | DataFile | None:
    if isinstance(spec, str) and not spec.startswith(VIRTUAL_PREFIXES):
        return _resolved(spec)
    if isinstance(spec, DataFile):
        paths = {name: _resolved(value) for name, value in (("path", spec.path), ("target_path", spec.target_path))
                 if value is not None and not value.startswith(VIRTUAL_PREFIXES)}
        return spec.model_copy(update=paths)
    return spec
