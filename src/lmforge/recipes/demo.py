"""`lmforge demo`: fine-tune the packaged MiniLM to tell the topic of chatterbot-corpus utterances."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lmforge.config.loader import apply_overrides, load_yaml
from lmforge.config.validate import validate_config
from lmforge.data.packaged import chatterbot_topics
from lmforge.recipes.finetune import finetune
from lmforge.runs.schema import RunConfig


def demo_config_path() -> Path:
    return Path(str(resources.files("lmforge") / "examples" / "demo.yaml"))


def demo(overrides: list[str] | None = None) -> Path:
    """Extract the demo data, then run the ordinary fine-tuning recipe on it."""
    rows = chatterbot_topics()
    topics = sorted({row["label"] for row in rows})
    print(f"lmforge demo: {len(rows)} chatterbot-corpus utterances, {len(topics)} topics ({', '.join(topics)})")
    raw = apply_overrides(load_yaml(demo_config_path()), overrides or [])
    return finetune(validate_config(RunConfig, raw))
