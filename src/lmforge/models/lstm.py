"""The from-scratch baseline: word embeddings + (bi)LSTM + a head, with a word-level tokenizer built
from the training data — so every report can show how much pre-training buys.

The classes are registered with transformers' Auto classes when lmforge.models.lstm is imported,
so a saved baseline loads with `AutoModelForSequenceClassification.from_pretrained` after that import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from lmforge.config.strict import STRICT
from lmforge.models.pooling import masked_mean


class LstmParams(BaseModel):
    """Size of the baseline; every field is a `model.lstm.<name>` key."""

    model_config = STRICT

    embedding_dim: int = Field(128, gt=0, description="Word embedding size.")
    hidden_size: int = Field(256, gt=0, description="LSTM hidden size per direction.")
    num_layers: int = Field(1, gt=0, description="Stacked LSTM layers.")
    bidirectional: bool = Field(True, description="Read the text in both directions.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings and LSTM outputs.")
    min_count: int = Field(1, gt=0, description="Words seen fewer times in training map to [UNK].")
    max_vocab: int = Field(50000, gt=2, description="Keep at most this many most frequent words.")
    lowercase: bool = Field(False, description="Lowercase words before lookup.")


class LstmConfig(PretrainedConfig):
    model_type = "lmforge-lstm"

    def __init__(self, vocab_size: int = 2, embedding_dim: int = 128, hidden_size: int = 256, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.2, pad_token_id: int = 0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size, self.embedding_dim, self.hidden_size = vocab_size, embedding_dim, hidden_size
        self.num_layers, self.bidirectional, self.dropout = num_layers, bidirectional, dropout


class _LstmEncoder(PreTrainedModel):
    config_class = LstmConfig
    base_model_prefix = "lstm"

    def __init__(self, config: LstmConfig):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.rnn = torch.nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True,
                                 bidirectional=config.bidirectional,
                                 dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.drop = torch.nn.Dropout(config.dropout)
        width = config.hidden_size * (2 if config.bidirectional else 1)
        self.head = torch.nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.1)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-token states (batch, tokens, width); padding is packed away so it never leaks into states."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.drop(self.embed(input_ids)), lengths, batch_first=True,
                                                         enforce_sorted=False)
        states, _ = self.rnn(packed)
        states, _ = torch.nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        return self.drop(states)


class LstmForSequenceClassification(_LstmEncoder):
    """Mean of the LSTM states over real tokens → linear head."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels=None, **unused):
        states = self.encode(input_ids, attention_mask)  # (batch, tokens, width)
        mask = attention_mask if attention_mask is not None else (input_ids != self.config.pad_token_id)
        pooled = masked_mean(states, mask)  # (batch, width)
        return SequenceClassifierOutput(logits=self.head(pooled))


class LstmForTokenClassification(_LstmEncoder):
    """LSTM state of each token → linear head."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels=None, **unused):
        return TokenClassifierOutput(logits=self.head(self.encode(input_ids, attention_mask)))


AutoConfig.register(LstmConfig.model_type, LstmConfig)
AutoModelForSequenceClassification.register(LstmConfig, LstmForSequenceClassification)
AutoModelForTokenClassification.register(LstmConfig, LstmForTokenClassification)


PIECES = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])


def build_word_tokenizer(texts: Iterable[str], params: LstmParams) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the training words ([PAD]=0, [UNK]=1), splitting on whitespace and punctuation."""
    counts = Counter(piece.lower() if params.lowercase else piece
                     for text in texts for piece, _ in PIECES.pre_tokenize_str(text))
    kept = [w for w, c in counts.most_common(params.max_vocab - 2) if c >= params.min_count]
    vocab = {"[PAD]": 0, "[UNK]": 1} | {word: i + 2 for i, word in enumerate(kept)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    if params.lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = PIECES
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   model_input_names=["input_ids", "attention_mask"])


def build_lstm_dir(texts: Iterable[str], params: LstmParams, num_labels: int, target: Path) -> Path:
    """Write an untrained baseline (tokenizer + config + random weights) that tasks then load like any model.

    Sequence and token classification share parameter names, so either Auto class loads these weights."""
    tokenizer = build_word_tokenizer(texts, params)
    config = LstmConfig(vocab_size=len(tokenizer), embedding_dim=params.embedding_dim, hidden_size=params.hidden_size,
                        num_layers=params.num_layers, bidirectional=params.bidirectional, dropout=params.dropout,
                        pad_token_id=tokenizer.pad_token_id, num_labels=num_labels)
    LstmForSequenceClassification(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def example_texts(examples: Iterable) -> Iterable[str]:
    """The words of any task's examples: token lists where the task has them, else the text."""
    for example in examples:
        tokens = getattr(example, "tokens", None)
        yield from tokens if tokens is not None else [example.text] + ([example.text_pair] if getattr(example, "text_pair", None) else [])
