"""Training on what the decoder produces: the `tuning.sequence` section turns a generation task's loss
into MRT, SCST or GRPO over candidates sampled by lmforge's decoding engine.

Each batch: the prompts (everything before each row's last reply) are decoded — `samples` sampled
candidates per prompt, plus the greedy output for SCST's baseline — the candidates are rewarded
against the row's reply, and the loss is computed from their log-probabilities under the model being
trained. The normal trainer does the rest (optimizer, LoRA, checkpoints, validation, early stopping);
each logged step adds the mean reward, KL to the reference (GRPO), entropy and output length.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import PreTrainedModel

from lmforge.decode.generate import generate, pad_id_of
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.errors import ConfigError
from lmforge.methods.sequence.losses import group_advantages, grpo_loss, mrt_loss, scst_loss
from lmforge.methods.sequence.params import SequenceParams
from lmforge.metrics.rewards import RunLoader, build_reward, reads_prompts

IGNORE = -100


def split_rows(batch: dict[str, torch.Tensor]) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt tokens, reply tokens) of each right-padded causal row: the reply is the row's last run of
    learned tokens, the prompt everything before it."""
    prompts, replies = [], []
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist(), strict=True):
        length = sum(mask)
        ids, labels = ids[:length], labels[:length]
        start = length
        while start > 0 and labels[start - 1] == IGNORE:
            start -= 1  # trailing unlearned tokens (none with the usual encoding)
        end = start
        while start > 0 and labels[start - 1] != IGNORE:
            start -= 1
        if start == 0:
            raise ConfigError("tuning.sequence needs rows with a prompt before the reply (source → target or chat rows)")
        prompts.append(ids[:start])
        replies.append(ids[start:end])
    return prompts, replies


def token_logprobs(model: PreTrainedModel, prompts: list[list[int]], outputs: list[list[int]],
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each output token given its prompt, (rows, longest output), and the output mask."""
    rows = [p + o for p, o in zip(prompts, outputs, strict=True)]
    longest = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (longest - len(r)) for r in rows], device=model.device)
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows], device=model.device)
    first = min(len(p) for p in prompts) - 1  # the earliest position that predicts an output token
    logits = model(input_ids=ids, attention_mask=mask).logits[:, first:].float()  # fp32 only where it is read
    width = max(len(o) for o in outputs)
    picked = torch.zeros(len(rows), width, device=logits.device)
    out_mask = torch.zeros(len(rows), width, device=logits.device)
    for row, (prompt, output) in enumerate(zip(prompts, outputs, strict=True)):
        if not output:
            continue
        positions = torch.arange(len(prompt) - 1 - first, len(prompt) - 1 - first + len(output), device=logits.device)
        scores = logits[row, positions].log_softmax(-1)
        picked[row, : len(output)] = scores.gather(1, torch.tensor(output, device=logits.device)[:, None]).squeeze(1)
        out_mask[row, : len(output)] = 1
    return picked, out_mask


def candidate_params(params: SequenceParams) -> DecodeParams:
    """How each prompt's `samples` candidates are decoded: sampling, or the best beams of a beam search."""
    if params.candidates == "beam":
        return DecodeParams(strategy="beam", num_beams=params.samples, num_return_sequences=params.samples)
    return DecodeParams(strategy="sample", num_return_sequences=params.samples, temperature=params.temperature,
                        top_k=params.top_k)


class SequenceObjective:
    """`loss(model, batch)` for a generation task trained at the sequence level; `stats` then hold the batch's
    mean reward, KL, entropy (of the sampled tokens) and mean output length, for the training log.
    `token_loss`: the token-level loss for ce_weight (default the task's cross-entropy)."""

    def __init__(self, task, params: SequenceParams, load_run: RunLoader | None = None,
                 token_loss=None) -> None:
        self.task, self.params = task, params
        self.token_loss = token_loss or task.loss
        self.reward = build_reward(params.rewards, load_run)
        self.reads_prompts = reads_prompts(params.rewards)
        #: prompt tokens -> the row's prompt as written (source text, or the messages before the reply), for a
        #: reward model; a prompt not found is passed as its decoded text
        self.prompt_of: dict[tuple[int, ...], Any] = {}
        self.reference: PreTrainedModel | None = None
        self.stats: dict[str, float] = {}

    def _decode(self, model: PreTrainedModel, prompts: list[list[int]], params: DecodeParams) -> list[list[list[int]]]:
        """Each prompt's outputs (token lists, EOS appended where the output stopped on its own)."""
        tokenizer = self.task.tokenizer
        eos = tokenizer.eos_token_id
        found = generate(model, tokenizer, DecodeRequest(prompts, params, self.params.max_new_tokens,
                                                         self.task.params.stop_strings,
                                                         batch_size=len(prompts)))  # in eval mode: generate sees to it
        return [[c.tokens + ([eos] if len(c.tokens) < self.params.max_new_tokens and eos is not None else [])
                 for c in candidates] for candidates in found]

    def _reference_logprobs(self, model: PreTrainedModel, prompts, outputs, pad_id) -> torch.Tensor:
        """The frozen reference's token log-probs: the model with its adapters off, or its copy from before training."""
        disable = getattr(model, "disable_adapter", None)
        with torch.no_grad():
            if disable is not None:
                with disable():
                    return token_logprobs(model, prompts, outputs, pad_id)[0]
            if self.reference is None:
                self.reference = copy.deepcopy(model).eval()
                for parameter in self.reference.parameters():
                    parameter.requires_grad_(False)
            return token_logprobs(self.reference, prompts, outputs, pad_id)[0]

    def __call__(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        p = self.params
        tokenizer = self.task.tokenizer
        pad_id = pad_id_of(tokenizer)
        prompts, replies = split_rows(batch)
        references = [[self.task.text(r)] for r in replies]
        outputs = self._decode(model, prompts, candidate_params(p))  # (prompts, samples) token lists
        flat_prompts = [prompt for prompt in prompts for _ in range(p.samples)]
        flat_outputs = [o for group in outputs for o in group]
        texts = [self.task.text(o) for o in flat_outputs]
        written = [self.prompt_of.get(tuple(prompt)) or tokenizer.decode(prompt, skip_special_tokens=True).strip()
                   for prompt in prompts] if self.reads_prompts else None
        rewards = torch.tensor(self.reward(texts, [r for r in references for _ in range(p.samples)],
                                           written and [w for w in written for _ in range(p.samples)]),
                               device=model.device).view(len(prompts), p.samples)
        logprobs, mask = token_logprobs(model, flat_prompts, flat_outputs, pad_id)
        sequence_logprobs = (logprobs * mask).sum(-1)
        kl = torch.zeros(())
        if p.method == "mrt":
            loss = mrt_loss(sequence_logprobs.view(len(prompts), p.samples), rewards, p.sharpness)
        elif p.method == "scst":
            greedy = self._decode(model, prompts, DecodeParams())
            baseline = torch.tensor(self.reward([self.task.text(g[0]) for g in greedy], references, written),
                                    device=model.device)
            loss = scst_loss(sequence_logprobs, rewards.flatten(), baseline.repeat_interleave(p.samples))
        else:
            reference = self._reference_logprobs(model, flat_prompts, flat_outputs, pad_id) if p.kl_weight else logprobs.detach()
            advantages = group_advantages(rewards).flatten()
            loss, kl = grpo_loss(logprobs, logprobs.detach(), reference, advantages, mask, p.clip, p.kl_weight)
        if p.ce_weight:
            loss = loss + p.ce_weight * self.token_loss(model, batch)[0]
        lengths = mask.sum(-1)
        self.stats = {"mean_reward": float(rewards.mean()), "kl": float(kl.detach()),
                      "entropy": float(-(logprobs.detach() * mask).sum() / mask.sum().clamp_min(1)),
                      "mean_length": float(lengths.float().mean())}
        return loss, None

