"""The web playground at `/`: one plain HTML page (no build step), told what is served."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def playground_page(info: dict[str, Any]) -> str:
    """The playground's HTML for `info` (model, task, endpoint, chat, api_key)."""
    page = resources.files(__package__).joinpath("playground.html").read_text(encoding="utf-8")
    return page.replace("__LMFORGE_INFO__", json.dumps(info).replace("</", "<\\/"))
