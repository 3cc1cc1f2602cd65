"""ONNX export through `torch.onnx` (the dynamo exporter), checked in onnxruntime before it is kept.

The graph is the model's forward pass without a KV cache: the tokenizer's inputs (input_ids, attention_mask,
token_type_ids where the model takes them) with batch and sequence axes dynamic, to the task head's outputs
(logits, or start/end logits for extractive QA), in fp32.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.errors import ModelError
from lmforge.packages import require

SKIPPED_OUTPUTS = ("loss", "past_key_values", "hidden_states", "attentions")
SAMPLES = ["The quick brown fox jumps over the lazy dog.", "Hello"]


class _Outputs(torch.nn.Module):
    """The model with plain tensors in and out, as an ONNX graph needs."""

    def __init__(self, model: PreTrainedModel, names: list[str], outputs: list[str]) -> None:
        super().__init__()
        self.model, self.names, self.outputs = model, names, outputs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        extra = {"use_cache": False} if "use_cache" in inspect.signature(self.model.forward).parameters else {}
        result = self.model(**dict(zip(self.names, inputs, strict=True)), **extra)
        return tuple(result[name] for name in self.outputs)


def export_onnx(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> float:
    """Write `target` (.onnx, weights inside) and return the largest difference between onnxruntime's and
    torch's outputs on sample text (a ModelError above 1e-3)."""
    require("onnxscript", "export", "ONNX export")
    ort = require("onnxruntime", "export", "ONNX export")
    model = model.float().eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sample = dict(tokenizer(SAMPLES, return_tensors="pt", padding=True))
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample and name in accepted]
    with torch.no_grad():
        reference = model(**{name: sample[name] for name in names})
    outputs = [key for key in reference.keys() if key not in SKIPPED_OUTPUTS and torch.is_tensor(reference[key])]
    dynamic = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}  # batch, sequence
    inputs = tuple(sample[name] for name in names)
    try:
        torch.onnx.export(_Outputs(model, names, outputs).eval(), inputs, str(target), input_names=names,
                          output_names=outputs, dynamic_shapes={"inputs": tuple(dynamic for _ in names)}, dynamo=True,
                          external_data=False, verbose=False)
    except Exception as error:  # the exporter's own errors: an operator or shape it cannot trace
        raise ModelError(f"torch.onnx could not export {type(model).__name__}: {str(error).splitlines()[0][:300]}") from None
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {name: sample[name].numpy() for name in names})
    mask = sample["attention_mask"].numpy().astype(bool)
    difference = 0.0
    for name, value in zip(outputs, got, strict=True):
        expected = reference[name].numpy()
        gap = np.abs(value - expected)
        difference = max(difference, float(gap[mask].max() if gap.shape[:2] == mask.shape else gap.max()))
    if difference > 1e-3:
        raise ModelError(f"{target}: onnxruntime's outputs differ from torch's by {difference:.2g} (over 1e-3); "
                         "the graph is wrong for this model — keep the Hugging Face export")
    return difference
