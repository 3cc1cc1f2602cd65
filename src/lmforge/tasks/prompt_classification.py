"""Prompt classification: a causal LM scores each label's word after a template (zero/few-shot, PET-style tuning).

The text fills `template` (`{text}`), the model reads it, and each label's verbalizer word is scored by
its log-likelihood as the continuation; the label whose word is likeliest wins. Training with this task
fine-tunes the same form (cross-entropy over the label words' scores), so a handful of examples moves
the model from zero-shot towards the task without a new head. Data, decoding and metrics are those of
text classification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.labelled import TextExample
from lmforge.data.params import DataParams
from lmforge.data.splits import Splits
from lmforge.errors import ConfigError
from lmforge.models.labels import saved_labels, set_labels
from lmforge.models.quantization import pretrained_kwargs
from lmforge.tasks.classification import TextClassification, TextClassificationParams


class PromptClassificationParams(BaseModel):
    model_config = STRICT

    name: Literal["prompt-classification"] = "prompt-classification"
    template: str = Field(..., description="The prompt, with {text} where the input goes; the label word follows it. "
                                           "Few-shot: write solved examples into it.")
    verbalizer: dict[str, str] = Field(..., description="Label -> the word that stands for it, e.g. {'0': ' negative', "
                                                        "'1': ' positive'} (mind the leading space).")
    chat_template: bool = Field(False, description="Send the filled template as the user's message through the "
                                                   "tokenizer's chat template; the label word starts the reply.")
    length_normalise: bool = Field(False, description="Score a multi-token word by its mean, not summed, log-likelihood.")

    @field_validator("template")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError("must contain {text}, where the input goes (e.g. '{text} It was')")
        return value


class PromptClassification(TextClassification):
    """Text classification through a causal LM's own vocabulary: no new weights."""

    def __init__(self, params: PromptClassificationParams, labels: list[str] | None = None):
        super().__init__(TextClassificationParams(), labels)
        self.prompt = params
        self.word_ids: list[list[int]] = []
        self.tokenizer: PreTrainedTokenizerBase | None = None

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        splits = super().read_splits(data, seed)
        missing = [label for label in self.labels if label not in self.prompt.verbalizer]
        if missing:
            raise ConfigError(f"task.verbalizer has no word for label(s) {', '.join(map(repr, missing))}; the data's "
                              f"labels are {', '.join(map(repr, self.labels))}")
        return splits

    def adapt_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def _label_words(self) -> list[list[int]]:
        if not self.word_ids:
            words = [self.prompt.verbalizer.get(label) for label in self.labels]
            if None in words:
                raise ConfigError(f"task.verbalizer has no word for label '{self.labels[words.index(None)]}'")
            self.word_ids = [self.tokenizer(word, add_special_tokens=False)["input_ids"] for word in words]
            empty = [label for label, ids in zip(self.labels, self.word_ids, strict=True) if not ids]
            if empty:
                raise ConfigError(f"task.verbalizer word for '{empty[0]}' is empty")
        return self.word_ids

    def prompt_text(self, text: str) -> str:
        filled = self.prompt.template.replace("{text}", text)
        if not self.prompt.chat_template:
            return filled
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError("task.chat_template is true but the tokenizer has no chat template; set it to false")
        return self.tokenizer.apply_chat_template([{"role": "user", "content": filled}], tokenize=False,
                                                  add_generation_prompt=True)

    def encode(self, examples: list[TextExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        self.tokenizer = tokenizer
        longest_word = max(len(ids) for ids in self._label_words())
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for example in examples:
            ids = tokenizer(self.prompt_text(example.text), add_special_tokens=not self.prompt.chat_template)["input_ids"]
            ids = ids[-(max_length - longest_word):]  # keep the end: it leads into the label word
            feature = {"input_ids": ids, "attention_mask": [1] * len(ids)}
            if example.labels:
                feature["labels"] = index[example.labels[0]]
            features.append(feature)
        return features

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_files_only,
                                                     trust_remote_code=trust_remote_code, **pretrained_kwargs(dtype, quantization))
        set_labels(model.config, self.labels)  # saved with the model, so a trained run knows its labels
        return model

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, labels) log-likelihood of each label word after each prompt."""
        words = self._label_words()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        sequences, scored = [], []  # one row per (example, label): prompt + word
        for row, length in enumerate(lengths):
            prompt = batch["input_ids"][row, :length].tolist()
            for word in words:
                sequences.append(prompt + word)
                scored.append((length, word))
        longest = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        device = batch["input_ids"].device
        ids = torch.tensor([s + [pad] * (longest - len(s)) for s in sequences], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in sequences], device=device)
        log_probs = F.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        scores = []
        for n, (length, word) in enumerate(scored):
            positions = torch.arange(length - 1, length - 1 + len(word), device=device)
            token_scores = log_probs[n, positions, torch.tensor(word, device=device)]
            scores.append(token_scores.mean() if self.prompt.length_normalise else token_scores.sum())
        return torch.stack(scores).view(len(lengths), len(words))

    def from_saved(self, model_dir: Path) -> PromptClassification:
        return PromptClassification(self.prompt, saved_labels(model_dir))
