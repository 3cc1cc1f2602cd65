"""A learned decoding policy: per prompt, the decoding strategy (an *arm*) with the best predicted reward
minus compute cost.

The policy reads the prompt's features from the model being decoded — its hidden states of one layer
averaged over the prompt (layer 0, the input embeddings, costs no forward pass; -1, the top layer, costs one)
and, optionally, the log of its length — and scores every arm with one linear map (standardised features →
predicted utility per arm), fitted as a contextual bandit from logged rewards
(`lmforge.decode.policy_fit`). `decode: {strategy: auto, policy: RUN_DIR}` decodes each prompt with the
arm its features pick.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from lmforge.decode.engine import pad_prompts
from lmforge.errors import ConfigError
from lmforge.files import atomic_write_text, atomic_write_with
from lmforge.models.pooling import masked_mean

POLICY_FILE = "policy.json"
WEIGHTS_FILE = "policy.safetensors"


@dataclass(frozen=True)
class PolicyFeatures:
    """Which features a policy reads: the mean hidden state of `layer` (0 = input embeddings, -1 = top layer)
    and, with `length`, log(1 + prompt tokens)."""

    layer: int = -1
    length: bool = False

    def read(self, model: PreTrainedModel, prompts: list[list[int]], pad_id: int, batch_size: int = 16) -> torch.Tensor:
        """(prompts, features) of `prompts` under `model`."""
        return self.from_states(prompt_features(model, prompts, pad_id, batch_size, self.layer), prompts)

    def from_states(self, states: torch.Tensor, prompts: list[list[int]]) -> torch.Tensor:
        """The features of `prompts` given their mean hidden states of `layer`, (prompts, hidden)."""
        if not self.length:
            return states.float().cpu()
        return torch.cat([states.float().cpu(), torch.tensor([[math.log1p(len(p))] for p in prompts])], dim=1)


@dataclass
class DecodingPolicy:
    """Arms (name → `DecodeParams` fields) and a linear utility model over standardised prompt features."""

    arms: dict[str, dict]
    mean: torch.Tensor  # (features,)
    scale: torch.Tensor  # (features,)
    weight: torch.Tensor  # (features + 1, arms): the last row is the bias
    cost_weight: float = 0.0  # reward given up per second of decoding, as trained
    features: PolicyFeatures = PolicyFeatures()  # what `utilities` reads (the default: policies saved before layer/length)

    def utilities(self, features: torch.Tensor) -> torch.Tensor:
        """(prompts, arms): predicted reward minus cost of each arm for each prompt's features."""
        standard = (features.float() - self.mean) / self.scale
        return torch.cat([standard, torch.ones(len(standard), 1)], dim=1) @ self.weight

    def choose(self, features: torch.Tensor) -> list[str]:
        """The arm with the highest predicted utility, per prompt."""
        names = list(self.arms)
        return [names[i] for i in self.utilities(features).argmax(dim=1).tolist()]

    def save(self, folder: Path) -> None:
        """policy.json (arms, cost weight) and policy.safetensors, each written atomically."""
        tensors = {"mean": self.mean, "scale": self.scale, "weight": self.weight}
        atomic_write_with(folder / WEIGHTS_FILE, lambda path: save_file({k: v.contiguous() for k, v in tensors.items()}, path))
        meta = {"arms": self.arms, "cost_weight": self.cost_weight, "features": asdict(self.features)}
        atomic_write_text(folder / POLICY_FILE, json.dumps(meta, indent=2))


def load_policy(folder: str | Path) -> DecodingPolicy:
    """The policy saved in `folder` (`DecodingPolicy.save`, after `lmforge.decode.policy_fit.fit_policy`)."""
    folder = Path(folder)
    if not (folder / POLICY_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(f"decode.policy: {folder} holds no decoding policy ({POLICY_FILE} and {WEIGHTS_FILE}); "
                          "fit one with `lmforge policy MODEL|RUN_DIR --data FILE --output DIR`")
    meta = json.loads((folder / POLICY_FILE).read_text())
    tensors = load_file(str(folder / WEIGHTS_FILE))
    try:
        features = PolicyFeatures(**meta.get("features", {}))
    except TypeError as error:
        raise ConfigError(f"{folder / POLICY_FILE}: 'features' takes layer and length only ({error})") from None
    return DecodingPolicy(meta["arms"], tensors["mean"], tensors["scale"], tensors["weight"], meta.get("cost_weight", 0.0),
                          features)


@torch.no_grad()
def prompt_features(model: PreTrainedModel, prompts: list[list[int]], pad_id: int, batch_size: int = 16,
                    layer: int = -1) -> torch.Tensor:
    """(prompts, hidden): each prompt's hidden states of `layer` averaged over its tokens (the encoder's for
    encoder-decoder models); layer 0 is the input embeddings, read without running the model."""
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = pad_prompts(prompts[start:start + batch_size], pad_id, left=False)
        ids, mask = ids.to(device), mask.to(device)
        # the encoder, or the transformer without its LM head: no vocabulary-wide logits for every prompt token
        body = model.get_encoder() if model.config.is_encoder_decoder else model.base_model
        if layer == 0:
            hidden = model.get_input_embeddings()(ids)
        elif layer == -1:
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            hidden = body(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        rows.append(masked_mean(hidden, mask).float().cpu())
    return torch.cat(rows)
