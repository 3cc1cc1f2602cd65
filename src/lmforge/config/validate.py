"""Turn pydantic validation errors into messages that name the key, its origin and a fix."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

import pydantic

from lmforge.config.loader import Key, RawConfig
from lmforge.errors import ConfigError

M = TypeVar("M", bound=pydantic.BaseModel)


def _model_at(model: type[pydantic.BaseModel], key: Key) -> type[pydantic.BaseModel] | None:
    """The pydantic model class that holds the fields at `key` (None when not a model)."""
    current: Any = model
    for part in key:
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None → X, so nested models are found through optional fields."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else annotation
    return annotation


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(error: dict, raw: RawConfig, model: type[pydantic.BaseModel]) -> str:
    loc: Key = tuple(str(part) for part in error["loc"])
    dotted = ".".join(loc)
    origin = raw.source_of(loc)
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        choices = sorted(parent.model_fields) if parent else []
        hint = suggest(loc[-1], choices) or (f"; valid keys: {', '.join(choices)}" if choices else "")
        where = f"{origin}: " if origin else ""
        return f"{where}unknown key '{dotted}'{hint}"
    message = error["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    if error["type"] == "missing":
        return f"{dotted} is required but not set" + (f" (in {origin})" if origin else "")
    if error["type"] == "value_error":
        return f"{dotted} {message}" + (f" ({origin})" if origin else "")
    got = error.get("input")
    suffix = f" ({origin})" if origin else ""
    return f"{dotted} {message}, got {got!r}{suffix}"


def validate_config(model: type[M], raw: RawConfig) -> M:
    """Validate `raw` against `model`, reporting every problem at once."""
    try:
        return model.model_validate(raw.data)
    except pydantic.ValidationError as exc:
        lines = [_describe(err, raw, model) for err in exc.errors()]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None
