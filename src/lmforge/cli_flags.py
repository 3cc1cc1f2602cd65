"""argparse arguments derived from a pydantic params model: one per field, typed, checked and described by it.

A field's `description` is its help (with the default appended), its annotation and constraints check the
value at parse time (`--batch-size 0` → `argument --batch-size: give a number above 0, not '0'`), and
`cli(...)` metadata says how it is spelled: positional, negatable, metavar; a list field is a repeatable flag.
Numbers on the command line are strict: a whole number is written as one ('3', not '3.0'), and a float is finite.
"""

from __future__ import annotations

import argparse
import types
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.fields import FieldInfo

#: how pydantic's failures read on the command line
_MESSAGES = {
    "greater_than": "give a number above {gt:g}", "greater_than_equal": "give a number of at least {ge:g}",
    "less_than": "give a number below {lt:g}", "less_than_equal": "give a number of at most {le:g}",
    "int_parsing": "give a whole number", "int_from_float": "give a whole number", "float_parsing": "give a number",
    "finite_number": "give a finite number",
}


def cli(default: Any = None, help: str = "", *, positional: bool = False, negatable: bool = False,  # noqa: A002
        metavar: str | None = None, optional: bool = False, **constraints: Any) -> Any:
    """A params-model field that is also a command-line argument. positional: an argument without dashes
    (`optional`: it may be left out; a list takes any number); a list flag may be given again; negatable:
    `--flag/--no-flag`; other keywords are pydantic constraints (gt=0, ge=1, le=65535, pattern…)."""
    spelling = {"positional": positional, "negatable": negatable, "metavar": metavar, "optional": optional}
    return Field(default, description=help, json_schema_extra={"cli": spelling}, **constraints)


def _spelling(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return dict(extra.get("cli", {}))


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        return kept[0] if len(kept) == 1 else Union[tuple(kept)]  # noqa: UP007
    return annotation


def _adapter(annotation: Any, metadata: list) -> TypeAdapter:
    from typing import Annotated

    from pydantic.types import AllowInfNan

    metadata = [*metadata, AllowInfNan(False)] if annotation is float else metadata
    return TypeAdapter(Annotated[(annotation, *metadata)] if metadata else annotation)


def _checker(annotation: Any, field: FieldInfo):
    """argparse `type=`: the text validated as the field would validate it; a readable ArgumentTypeError."""
    def check(text: str) -> Any:  # the adapter is built on first use: most flags are never given
        try:
            if annotation is int and not text.strip().lstrip("+-").isdigit():  # pydantic alone takes '3.0'
                raise argparse.ArgumentTypeError(f"{_MESSAGES['int_parsing']}, not {text!r}")
            return _adapter(annotation, field.metadata).validate_python(text)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            template = _MESSAGES.get(first["type"])
            message = template.format(**first.get("ctx", {})) if template else first["msg"].removeprefix("Value error, ")
            raise argparse.ArgumentTypeError(f"{message}, not {text!r}") from None
    return check


def checked(annotation: Any, **constraints: Any):
    """argparse `type=` for values of `annotation` under pydantic `constraints`, e.g. checked(int, gt=0)."""
    field = Field(**constraints)
    return _checker(annotation, FieldInfo.merge_field_infos(field, annotation=annotation))


def _help(field: FieldInfo, shown_default: bool) -> str:
    text = field.description or ""
    default = field.default
    if shown_default and default not in (None, [], "") and not isinstance(default, bool) and "default" not in text:
        text += f" (default {default})"
    return text


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[BaseModel]) -> None:
    """One argument per field of `model`, named after it: `max_new_tokens` is --max-new-tokens."""
    for name, field in model.model_fields.items():
        spelling = _spelling(field)
        annotation = _without_none(field.annotation)
        required = field.is_required()
        kwargs: dict[str, Any] = {"help": _help(field, not required)}
        if spelling.get("metavar"):
            kwargs["metavar"] = spelling["metavar"]
        if get_origin(annotation) is list:
            item = get_args(annotation)[0]
            kwargs["type"] = _checker(item, FieldInfo(annotation=item))
            if spelling.get("positional"):
                parser.add_argument(name, nargs="*", **kwargs)
            else:
                parser.add_argument(_flag(name), action="append", dest=name, **kwargs)
            continue
        if get_origin(annotation) is Literal:
            kwargs["choices"] = list(get_args(annotation))
        elif annotation is bool:
            action = argparse.BooleanOptionalAction if spelling.get("negatable") else "store_true"
            parser.add_argument(_flag(name), action=action, default=field.default, dest=name, **kwargs)
            continue
        else:
            kwargs["type"] = _checker(annotation, field)
        if spelling.get("positional"):
            parser.add_argument(name, nargs="?" if spelling.get("optional") else None, **kwargs)
        else:
            parser.add_argument(_flag(name), dest=name, required=required,
                                default=None if required else field.default, **kwargs)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
