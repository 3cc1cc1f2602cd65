"""Continued pre-training on unlabelled text: masked-LM for encoders, causal-LM for decoders.

Documents are tokenised, joined with a separator (EOS, or [SEP] for encoders) and cut into full
`data.max_length` blocks (packing), so no compute goes to padding; `packing: false` keeps one
truncated document per row instead. Masking follows BERT (15% of tokens: 80% [MASK], 10% random,
10% kept), drawn afresh each step from the seeded RNG; validation uses a fixed mask so scores compare.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample, iter_examples, read_examples
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records, write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.errors import ConfigError
from lmforge.models.quantization import pretrained_kwargs

IGNORE = -100


class LanguageModelingParams(BaseModel):
    model_config = STRICT

    name: Literal["language-modeling"] = "language-modeling"
    objective: Literal["auto", "mlm", "clm"] = Field("auto", description="mlm for encoders, clm for decoders; auto picks by architecture.")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked for masked-LM.")
    packing: bool = Field(True, description="Concatenate documents and cut full blocks of data.max_length tokens.")


def pack(documents: list[list[int]], separator: int | None, block_size: int) -> list[list[int]]:
    """Concatenate token lists (separator between documents) and cut blocks of `block_size`; the last may be shorter.

    >>> pack([[1, 2, 3], [4, 5]], 0, 4)
    [[1, 2, 3, 0], [4, 5]]
    """
    stream: list[int] = []
    for i, document in enumerate(documents):
        if i and separator is not None:
            stream.append(separator)
        stream.extend(document)
    return [stream[i:i + block_size] for i in range(0, len(stream), block_size)]


class LanguageModeling:
    default_metric = "loss"
    loads_quantized = True
    metric_names = ("loss", "perplexity")

    def __init__(self, params: LanguageModelingParams, labels: list[str] | None = None):
        self.params = params
        self.labels: list[str] = []
        self.objective = params.objective
        self.mask_id: int | None = None
        self.special_ids: list[int] = []
        self.vocab_size = 0
        self.separator: int | None = None

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[TextExample]:
        return read_examples(path, data, errors=errors, require_labels=False)

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, False), data, seed,
                               "unlabelled text (.txt lines, or .jsonl/.csv with data.text_column)",
                               iterate=lambda path, own, errors: iter_examples(path, own, False, errors, False))

    def example_from_text(self, text: str, where: str) -> TextExample:
        return TextExample(text, None, (), where)

    def save_examples(self, examples: list[TextExample], path: Path) -> None:
        write_jsonl(path, [{"text": e.text} for e in examples])

    def load_examples(self, path: Path) -> list[TextExample]:
        return [TextExample(r["text"], None, (), f"{path}, line {n}") for n, r in read_records(path)]

    # --- model ----------------------------------------------------------------------------------
    def adapt_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = list(tokenizer.all_special_ids)
        self.vocab_size = len(tokenizer)
        self.separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        if self.objective == "auto":
            self.objective = "mlm" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "clm"
        if self.objective == "mlm" and self.mask_id is None:
            raise ConfigError(f"masked-LM needs a tokenizer with a mask token; {path} has none (use task.objective=clm)")
        auto = AutoModelForMaskedLM if self.objective == "mlm" else AutoModelForCausalLM
        return auto.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
                                    **pretrained_kwargs(dtype, quantization))

    def encode(self, examples: list[TextExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        if not examples:  # e.g. no validation split (the tokenizer fails on an empty batch)
            return []
        if not self.params.packing:
            encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
            return [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in encoded["input_ids"]]
        documents = tokenizer([e.text for e in examples], add_special_tokens=False)["input_ids"]
        blocks = pack(documents, self.separator, max_length)
        return [{"input_ids": block, "attention_mask": [1] * len(block)} for block in blocks if len(block) > 1]

    def _targets(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None) -> tuple[dict, torch.Tensor]:
        """(model inputs, per-token targets with IGNORE where nothing is predicted)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.objective == "clm":
            targets = ids.masked_fill(mask == 0, IGNORE)
            return {"input_ids": ids, "attention_mask": mask}, targets
        candidates = (mask == 1) & ~torch.isin(ids, torch.tensor(self.special_ids, device=ids.device))
        draw = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
        chosen = candidates & (draw < self.params.mlm_probability)
        targets = ids.masked_fill(~chosen, IGNORE)
        kind = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
        corrupted = ids.masked_fill(chosen & (kind < 0.8), self.mask_id)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=generator, device="cpu").to(ids.device)
        corrupted = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), random_ids, corrupted)
        return {"input_ids": corrupted, "attention_mask": mask}, targets

    def _token_nll(self, model: PreTrainedModel, batch: dict, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self._targets(batch, generator)
        logits = model(**inputs).logits.float()  # (batch, tokens, vocab)
        if self.objective == "clm":
            logits, targets = logits[:, :-1], targets[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")  # (batch, tokens)
        counted = (targets != IGNORE).float()
        return nll * counted, counted

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)  # the same masks every evaluation
        nll, counted = self._token_nll(model, batch, generator)
        return torch.stack([nll, counted], dim=-1)  # (batch, tokens, 2)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        nll, counted = self._token_nll(model, batch, None)
        return nll.sum() / counted.sum().clamp(min=1), nll

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[TextExample]) -> list[dict]:
        """One record per block (with packing, blocks do not follow document boundaries)."""
        records = []
        for output in outputs:
            nll, counted = float(output[:, 0].sum()), float(output[:, 1].sum())
            records.append({"tokens_scored": int(counted), "loss": nll / counted if counted else None, "nll": nll})
        return records

    def score(self, predictions: list[dict], examples: list[TextExample], train_examples: list[TextExample]) -> dict:
        nll = sum(p["nll"] for p in predictions)
        tokens = sum(p["tokens_scored"] for p in predictions)
        loss = nll / tokens if tokens else float("nan")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "tokens_scored": tokens, "count": len(predictions)}

    def from_saved(self, model_dir: Path) -> LanguageModeling:
        return LanguageModeling(self.params)
