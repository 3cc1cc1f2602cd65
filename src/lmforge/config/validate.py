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


def _model_at(model: type[pydantic.BaseModel], key: Key, data: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model class that holds the fields at `key` (None when not a model).

    A union of models told apart by `name` (the `task:` section) is resolved with the data's `name`."""
    current: Any = model
    for part in key:
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        data = data.get(part) if isinstance(data, dict) else None
        current = _pick(_unwrap(field.annotation), data)
    return current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None → X, so nested models are found through optional fields."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation) and len(args) == 1:
        return args[0]
    return annotation


def _pick(annotation: Any, data: Any) -> Any:
    members = typing.get_args(annotation)
    if members and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        name = data.get("name") if isinstance(data, dict) else data
        for member in members:
            field = getattr(member, "model_fields", {}).get("name")
            if field is not None and name in typing.get_args(field.annotation):
                return member
    if typing.get_origin(annotation) is typing.Annotated:
        return _pick(typing.get_args(annotation)[0], data)
    return annotation


def _strip_tags(loc: Key, data: Any) -> Key:
    """Drop the union tag pydantic puts in locations: ('task', 'token-classification', 'stride') → ('task', 'stride')."""
    kept: list[str] = []
    for part in loc:
        if isinstance(data, dict) and data.get("name") == part and part not in data:
            continue
        kept.append(part)
        data = data.get(part) if isinstance(data, dict) else None
    return tuple(kept)


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def refuse_foreign_knobs(params: pydantic.BaseModel, foreign: set[str] | frozenset[str], owner: str,
                         fix: str = "remove {it}") -> None:
    """A ValueError when `params` sets any of the `foreign` fields (knobs of another strategy or method than
    `owner`, e.g. "strategy 'greedy'") away from its default — a saved config lists every field at its
    default, so only a changed one counts. `fix` says what to do, with {it} standing for "it" or "them"."""
    fields = type(params).model_fields
    names = sorted(name for name in foreign if getattr(params, name) != fields[name].default)
    if names:
        it = "it" if len(names) == 1 else "them"
        raise ValueError(f"{', '.join(names)} {'does' if len(names) == 1 else 'do'} not apply to {owner}; "
                         + fix.format(it=it))


def _describe(error: dict, raw: RawConfig, model: type[pydantic.BaseModel]) -> str:
    loc: Key = _strip_tags(tuple(str(part) for part in error["loc"]), raw.data)
    dotted = ".".join(loc)
    origin = raw.source_of(loc)
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1], raw.data)
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
