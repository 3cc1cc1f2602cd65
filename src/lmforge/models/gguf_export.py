"""GGUF files (llama.cpp, Ollama, LM Studio) written by llama.cpp's own converter, `convert_hf_to_gguf.py`.

The converter is not on PyPI as a module: it ships in llama.cpp's source tree (and in llama-cpp-python's
sdist, `vendor/llama.cpp/`) beside the `gguf-py` and `conversion/` packages it imports. lmforge runs it on a
plain Hugging Face folder in its own process; `make llama-cpp-converter` puts a copy under `.venv/llama.cpp`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args

from lmforge.errors import ConfigError, ModelError
from lmforge.files import STAGING_PREFIX

OutType = Literal["f32", "f16", "bf16", "q8_0"]
OUTTYPES: tuple[str, ...] = get_args(OutType)
CONVERTER = "convert_hf_to_gguf.py"
CONVERTER_ENV = "LMFORGE_LLAMA_CPP"
HOW_TO_GET = ("run `make llama-cpp-converter` (it unpacks llama.cpp's converter from the llama-cpp-python sdist "
              "into .venv/llama.cpp), or pass --converter PATH/convert_hf_to_gguf.py of a llama.cpp checkout, or set "
              f"{CONVERTER_ENV} to that folder")


def find_converter(given: str | Path | None = None) -> Path:
    """llama.cpp's converter: `given`, else $LMFORGE_LLAMA_CPP/convert_hf_to_gguf.py, else <venv>/llama.cpp/…"""
    if given is not None:
        path = Path(given)
        path = path / CONVERTER if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"--converter {given}: no {CONVERTER} there; {HOW_TO_GET}")
        return path
    for folder in (os.environ.get(CONVERTER_ENV), Path(sys.prefix) / "llama.cpp"):
        if folder and (Path(folder) / CONVERTER).is_file():
            return Path(folder) / CONVERTER
    raise ConfigError(f"GGUF export needs llama.cpp's {CONVERTER}: {HOW_TO_GET}")


def convert_to_gguf(hf_folder: Path, target: Path, outtype: str = "f16", converter: str | Path | None = None) -> Path:
    """Write `target` (.gguf) from the Hugging Face folder `hf_folder` at `outtype`, atomically."""
    if outtype not in OUTTYPES:
        raise ConfigError(f"--outtype {outtype}: choose one of {', '.join(OUTTYPES)}")
    script = find_converter(converter)
    staging = target.with_name(f"{STAGING_PREFIX}{target.name}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(script.parent / "gguf-py"),
                                                                     str(script.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), str(hf_folder), "--outfile", str(staging), "--outtype", outtype],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        staging.unlink(missing_ok=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
        raise ModelError(f"llama.cpp's converter could not write GGUF from {hf_folder}: {reason.strip()[:300]}")
    os.replace(staging, target)
    return target


#: decode.weights -> the GGUF weight type that decodes like it
OUTTYPE_OF_WEIGHTS = {"fp32": "f32", "bf16": "bf16", "int8": "q8_0"}


def cached_gguf(hf_folder: Path, outtype: str) -> Path:
    """A GGUF of the Hugging Face folder `hf_folder` at `outtype`, converted once and kept in lmforge's cache
    (keyed by the folder's path and its weight files' sizes and times: a retrained model converts again)."""
    import hashlib

    from lmforge.packages import cache_dir

    weights = sorted(p for p in Path(hf_folder).iterdir() if p.suffix in (".safetensors", ".bin"))
    if not weights:
        raise ModelError(f"{hf_folder} has no weight files to convert to GGUF")
    stamp = "|".join([str(Path(hf_folder).resolve()), outtype] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                                                 for p in weights])
    target = cache_dir() / "gguf" / hashlib.sha256(stamp.encode()).hexdigest()[:16] / f"model-{outtype}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_to_gguf(Path(hf_folder), target, outtype)
    return target
