"""`lmforge export RUN_OR_MODEL --output DIR [--format hf|gguf|onnx]`: a run's model (or a base model) for the
engines people deploy on — a plain Hugging Face folder, a GGUF file for llama.cpp/Ollama, or an ONNX graph."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from peft import PeftModel
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from lmforge.errors import RunDirError
from lmforge.files import STAGING_PREFIX
from lmforge.models.adapters import merged
from lmforge.models.export import save_pretrained_atomic, write_folder_atomic
from lmforge.models.gguf_export import convert_to_gguf, find_converter
from lmforge.models.resolve import resolve_model
from lmforge.runs.load import load_trained
from lmforge.runs.run_dir import load_run_config


def export(source: Path | str, output: Path, fmt: str = "hf", outtype: str = "f16",
           converter: str | None = None) -> tuple[Path, str]:
    """Write `source` (a run directory, or a model name/folder) to the new folder `output` in `fmt`;
    (the file or folder written, a note on how it was checked)."""
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise RunDirError(f"{output} already exists and is not empty; choose a new --output folder")
    if fmt == "gguf":
        find_converter(converter)  # before any model is loaded
    is_run = (Path(source) / "config.yaml").is_file()
    if fmt == "gguf" and not is_run:  # a base model's folder is converted as it is
        return _gguf(Path(resolve_model(str(source))), output, outtype, converter), ""
    model, tokenizer = _load(source, is_run)
    if fmt == "hf":
        return save_pretrained_atomic(model, tokenizer, output), ""
    if fmt == "onnx":
        from lmforge.models.onnx_export import export_onnx

        gap: list[float] = []

        def write(staging: Path) -> None:
            gap.append(export_onnx(model, tokenizer, staging / "model.onnx"))
            model.config.save_pretrained(staging)
        folder = write_folder_atomic(output, write, tokenizer)
        return folder / "model.onnx", f"onnxruntime's outputs within {gap[0]:.1e} of torch's"
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}hf-", dir=output.parent))
    try:
        save_pretrained_atomic(model, tokenizer, staging / "model")
        return _gguf(staging / "model", output, outtype, converter), ""
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load(source: Path | str, is_run: bool) -> tuple[PreTrainedModel, object]:
    """A run's model (a PEFT adapter merged into its base weights), or a base model with its own head."""
    if not is_run:
        path = resolve_model(str(source))
        causal = any(a.endswith("ForCausalLM") for a in AutoConfig.from_pretrained(path).architectures or [])
        model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(path, local_files_only=True)
        return model, AutoTokenizer.from_pretrained(path, local_files_only=True)
    config = load_run_config(Path(source))
    if config.tuning.strategy_network is not None:
        raise RunDirError(f"{source} is a strategy network (one expert per task, routed per input): it has no single "
                          f"set of weights to merge; use it through lmforge evaluate/predict/generate")
    # a QLoRA run's adapters merge into the base in full precision (the usual way to deploy them): the export
    # loads anywhere, without bitsandbytes
    config = config.model_copy(update={"model": config.model.model_copy(update={"quantization": "none"})})
    _, model, tokenizer = load_trained(Path(source), config)
    return (merged(model) if isinstance(model, PeftModel) else model), tokenizer


def _gguf(hf_folder: Path, output: Path, outtype: str, converter: str | None) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    return convert_to_gguf(hf_folder, output / f"model-{outtype}.gguf", outtype, converter)
