"""Read YAML into plain dicts while recording the file:line of every key.

Overrides use dotted keys (`train.lr=3e-5`); their values are parsed as YAML scalars.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.config.safe_yaml import check_yaml_shape, safe_load
from lmforge.errors import ConfigError
from lmforge.files import read_utf8

Key = tuple[str, ...]


@dataclass
class RawConfig:
    """A config as loaded: nested plain data plus where each key was set."""

    data: dict[str, Any]
    sources: dict[Key, str] = field(default_factory=dict)

    def source_of(self, key: Key) -> str | None:
        """The origin of `key` or of its nearest parent, e.g. "cfg.yaml, line 3"."""
        for end in range(len(key), -1, -1):
            if key[:end] in self.sources:
                return self.sources[key[:end]]
        return None


def _record_lines(node: yaml.Node, prefix: Key, path: str, sources: dict[Key, str]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (str(key_node.value),)
            sources[key] = f"{path}, line {key_node.start_mark.line + 1}"
            _record_lines(value_node, key, path, sources)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = prefix + (str(index),)
            sources[key] = f"{path}, line {item.start_mark.line + 1}"
            _record_lines(item, key, path, sources)


def load_yaml(path: str | Path) -> RawConfig:
    """Load one YAML mapping, keeping line numbers for error messages."""
    path = Path(path)
    if path.is_dir():
        hint = " (to continue a run: lmforge train --resume FOLDER)" if (path / "config.yaml").is_file() else ""
        raise ConfigError(f"config file {path} is a folder; give a YAML file{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = read_utf8(path, ConfigError)
    check_yaml_shape(text, str(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (task:, model:, data:, train:)")
    sources: dict[Key, str] = {}
    if node is not None:
        _record_lines(node, (), str(path), sources)
    return RawConfig(data=data, sources=sources)


def parse_overrides(overrides: list[str]) -> list[tuple[Key, Any, str]]:
    """Parse `a.b=value` strings into (key, value, origin) triples.

    >>> parse_overrides(["train.lr=3e-5"])[0][:2]
    (('train', 'lr'), 3e-05)
    """
    parsed = []
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or not name or any(not part for part in name.split(".")):
            raise ConfigError(f"override '{item}' must look like section.key=value (e.g. train.lr=3e-5)")
        parsed.append((tuple(name.split(".")), _parse_scalar(text), f"from override '{item}'"))
    return parsed


def _parse_scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        value = safe_load(text, f"override value {text[:40]!r}") if text else ""
    except yaml.YAMLError:
        return text
    # `task.prompt=Translate: {source}` is text, not a YAML mapping; write {a: 1} or [1, 2] for structures
    if isinstance(value, dict | list) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def apply_overrides(raw: RawConfig, overrides: list[str]) -> RawConfig:
    """Return a copy of `raw` with each dotted override set."""
    data = copy.deepcopy(raw.data)
    sources = dict(raw.sources)
    for key, value, origin in parse_overrides(overrides):
        node = data
        for depth, part in enumerate(key[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if isinstance(child, str):  # `model: minilm-l6` is shorthand for `model: {name: minilm-l6}`
                child = node[part] = {"name": child}
                section = key[: depth + 1]
                if section in sources:
                    sources[section + ("name",)] = sources[section]
            if not isinstance(child, dict):
                dotted = ".".join(key[: depth + 1])
                raise ConfigError(f"override '{'.'.join(key)}': {dotted} is a value, not a section")
            node = child
        node[key[-1]] = value
        stale = [k for k in sources if k[: len(key)] == key]
        for k in stale:
            del sources[k]
        sources[key] = origin
    return RawConfig(data=data, sources=sources)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RawConfig:
    """Load `path` (or start empty) and apply the overrides."""
    raw = load_yaml(path) if path is not None else RawConfig(data={})
    return apply_overrides(raw, overrides or [])
