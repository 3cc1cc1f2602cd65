"""`lmforge export RUN_DIR --output DIR`: the run's model as a plain Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel

from lmforge.errors import RunDirError
from lmforge.models.export import save_pretrained_atomic
from lmforge.recipes.evaluate import load_trained
from lmforge.recipes.run_dir import load_run_config
from lmforge.tuning.adapters import merged


def export(run_dir: Path, output: Path) -> Path:
    """Save the run's model (a PEFT adapter merged into its base weights) to `output`, never over files."""
    if output.exists() and any(output.iterdir()):
        raise RunDirError(f"{output} already exists and is not empty; choose a new --output folder")
    config = load_run_config(run_dir)
    if config.tuning.strategy_network is not None:
        raise RunDirError(f"{run_dir} is a strategy network (one expert per task, routed per input): it has no single "
                          f"set of weights to merge; use it through lmforge evaluate/predict/generate")
    _, model, tokenizer = load_trained(run_dir, config)
    if isinstance(model, PeftModel):
        model = merged(model)
    return save_pretrained_atomic(model, tokenizer, output)
