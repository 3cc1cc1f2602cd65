"""Where installed data/weight packages live (found without importing them) and lmforge's cache."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_dir(module: str) -> Path | None:
    """The installed folder of `module`, found without importing it (some packages import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    """Where converted models and extracted data are kept: $LMFORGE_CACHE, else ~/.cache/lmforge."""
    return Path(os.environ.get("LMFORGE_CACHE", Path.home() / ".cache" / "lmforge"))


def require(module: str, extra: str, purpose: str):
    """`module` imported, or a one-line error naming the lmforge extra that installs it."""
    import importlib

    from lmforge.errors import ConfigError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs {module}, which is not installed: pip install 'lmforge[{extra}]'") from None
