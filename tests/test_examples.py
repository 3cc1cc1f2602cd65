"""Every shipped example config validates (data files may live outside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_config, validate_config
from lmforge.recipes.demo import demo_config_path
from lmforge.recipes.search import SearchConfig
from lmforge.runs.schema import RunConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml")) + [demo_config_path()]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    raw = load_config(path)
    config = validate_config(SearchConfig if "search" in raw.data else RunConfig, raw)  # search configs add `search:`
    assert config.task.name and config.model.name
