"""Every shipped example config validates (data files may live outside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_config, validate_config
from lmforge.recipes.demo import demo_config_path
from lmforge.recipes.schema import RunConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml")) + [demo_config_path()]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    config = validate_config(RunConfig, load_config(path))
    assert config.task.name and config.model.name
