"""An encoder plus a head that reads the hidden states at the two entity-start markers
(Baldini Soares et al., 2019, "Matching the Blanks": ENTITY START representation).

Saved as the encoder's own HF folder (loads with `AutoModel.from_pretrained`) plus
`relation_head.safetensors` and `relation_head.json` for the head.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

HEAD_WEIGHTS, HEAD_CONFIG = "relation_head.safetensors", "relation_head.json"


class EntityMarkerClassifier(torch.nn.Module):
    """concat(h[E1], h[E2]) → dropout → linear → relation logits."""

    def __init__(self, encoder: torch.nn.Module, num_labels: int, head_id: int, tail_id: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head_id, self.tail_id = head_id, tail_id
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(2 * encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **inputs) -> SequenceClassifierOutput:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state  # (B, T, H)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        head = states[rows, (input_ids == self.head_id).int().argmax(dim=1)]  # (B, H): first [E1]
        tail = states[rows, (input_ids == self.tail_id).int().argmax(dim=1)]  # (B, H): first [E2]
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(torch.cat([head, tail], dim=-1))))

    def save_pretrained(self, folder: str | Path, **kwargs) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder, **kwargs)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()}, str(folder / HEAD_WEIGHTS))
        (folder / HEAD_CONFIG).write_text(json.dumps({"head_id": self.head_id, "tail_id": self.tail_id,
                                                       "num_labels": self.classifier.out_features}), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: str | Path, num_labels: int, head_id: int, tail_id: int, vocab_size: int,
                        **load_kwargs) -> EntityMarkerClassifier:
        """The encoder at `folder` (embeddings resized to `vocab_size`), with the saved head when there is one."""
        encoder = AutoModel.from_pretrained(folder, **load_kwargs)
        if encoder.get_input_embeddings().num_embeddings != vocab_size:
            encoder.resize_token_embeddings(vocab_size)
        model = cls(encoder, num_labels, head_id, tail_id, getattr(encoder.config, "hidden_dropout_prob", 0.1))
        weights = Path(folder) / HEAD_WEIGHTS
        if weights.is_file():
            model.classifier.load_state_dict(load_file(str(weights)))
        return model
