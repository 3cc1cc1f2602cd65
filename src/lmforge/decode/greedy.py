"""Batched greedy decoding of token prompts, through HF `generate` for now.

Prompts are batched longest-first; decoder-only prompts are left-padded so every row's next token
sits in the last column. Returns only the new tokens, cut at the first stop token.
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from lmforge.models.precision import autocast_for


def _pad(prompts: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(p) for p in prompts)
    ids, mask = [], []
    for prompt in prompts:
        fill = [pad_id] * (longest - len(prompt))
        ids.append(fill + prompt if left else prompt + fill)
        mask.append([0] * len(fill) + [1] * len(prompt) if left else [1] * len(prompt) + [0] * len(fill))
    return torch.tensor(ids), torch.tensor(mask)


def _until_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:i]
    return tokens


@torch.no_grad()
def greedy(model: PreTrainedModel, prompts: list[list[int]], pad_id: int, stop_ids: list[int], max_new_tokens: int,
           batch_size: int = 16, precision: str = "fp32", progress: bool = False) -> list[list[int]]:
    """The greedy continuation of each prompt (without the prompt and the stop token)."""
    device = next(model.parameters()).device
    encoder_decoder = bool(model.config.is_encoder_decoder)
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=None, max_length=None,
                  eos_token_id=list(stop_ids), pad_token_id=pad_id, temperature=None, top_p=None, top_k=None)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: dict[int, list[int]] = {}
    was_training = model.training
    model.eval()
    stops = set(stop_ids)
    for start in tqdm(range(0, len(order), batch_size), desc="generating", disable=not progress, leave=False):
        indices = order[start:start + batch_size]
        ids, mask = _pad([prompts[i] for i in indices], pad_id, left=not encoder_decoder)
        with autocast_for(precision, device):
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        new = generated[:, 1:] if encoder_decoder else generated[:, ids.shape[1]:]  # drop decoder start / prompt
        for row, index in enumerate(indices):
            outputs[index] = _until_stop(new[row].tolist(), stops)
    model.train(was_training)
    return [outputs[i] for i in range(len(prompts))]
