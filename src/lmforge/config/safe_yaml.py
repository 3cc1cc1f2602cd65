"""YAML read without letting a document exhaust the machine: nesting, alias expansion and size are
bounded from the event stream (linear, no recursion) before anything is composed or built."""

from __future__ import annotations

from typing import Any

import yaml

from lmforge.errors import ConfigError

MAX_DEPTH = 64  # nested mappings/sequences; a config needs a handful
MAX_NODES = 200_000  # nodes once every alias is expanded; a config has hundreds
MAX_CHARS = 5_000_000


def check_yaml_shape(text: str, where: str) -> None:
    """Refuse `text` (a ConfigError naming `where` and the line) when it is too large, too deeply nested or
    expands too far through aliases (a 'billion laughs' document)."""
    if len(text) > MAX_CHARS:
        raise ConfigError(f"{where}: {len(text):,} characters is too large for a config (at most {MAX_CHARS:,})")
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    stack: list[tuple[str | None, int]] = [(None, 0)]  # (anchor, nodes so far) of each open collection
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) > MAX_DEPTH:
                    raise ConfigError(f"{where}, line {line}: nested more than {MAX_DEPTH} levels deep; a config "
                                      "needs only a few")
                stack.append((event.anchor, 0))
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, count = stack.pop()
                added = count + 1
            elif isinstance(event, yaml.ScalarEvent):
                anchor, added = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, added = None, sizes.get(event.anchor, 1)
            else:
                continue
            if anchor is not None:
                sizes[anchor] = added
            parent_anchor, total = stack[-1]
            stack[-1] = (parent_anchor, total + added)
            if total + added > MAX_NODES:
                raise ConfigError(f"{where}, line {line}: the document expands to more than {MAX_NODES:,} values "
                                  "(aliases repeating aliases?); write the values out")
    except yaml.YAMLError:
        return  # the loader that follows reports the syntax error with its line


def safe_load(text: str, where: str) -> Any:
    """`yaml.safe_load(text)` after `check_yaml_shape`."""
    check_yaml_shape(text, where)
    return yaml.safe_load(text)
