"""Sequence-level losses: minimum risk training, self-critical sequence training, GRPO.

Each is a plain function of log-probabilities and rewards, so it can be checked by hand on tiny inputs;
the training loop (decoding, rewards, log-probs under the policy) lives elsewhere.
"""

from __future__ import annotations

import torch


def mrt_loss(sequence_logprobs: torch.Tensor, rewards: torch.Tensor, sharpness: float = 1.0) -> torch.Tensor:
    """Minimum risk training (Shen et al. 2016): the expected risk 1 − reward under the candidates'
    distribution renormalised over each source's N candidates, Q ∝ p^sharpness.

    `sequence_logprobs` and `rewards` are (sources, N); returns the mean over sources.
    """
    weights = torch.softmax(sharpness * sequence_logprobs, dim=-1)
    return (weights * (1.0 - rewards)).sum(-1).mean()


def scst_loss(sample_logprobs: torch.Tensor, sample_rewards: torch.Tensor, baseline_rewards: torch.Tensor) -> torch.Tensor:
    """Self-critical sequence training (Rennie et al. 2017): REINFORCE on sampled sequences with the greedy
    output's reward as baseline, −(r − b) · log p(sample), mean over samples (all (samples,))."""
    advantage = (sample_rewards - baseline_rewards).detach()
    return -(advantage * sample_logprobs).mean()


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's advantages: each reward standardised within its prompt's group, (prompts, G) → (prompts, G)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def kl_to_reference(logprobs: torch.Tensor, reference_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate to the reference policy (the unbiased, non-negative "k3" estimator used by GRPO):
    exp(ref − new) − (ref − new) − 1; zero where the two agree."""
    delta = reference_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, reference_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2, kl_weight: float = 0.04
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO (Shao et al. 2024): the clipped surrogate of PPO with group-normalised advantages and a KL penalty
    to a frozen reference. Token tensors are (sequences, tokens) with `mask` 1 on generated tokens;
    `advantages` is (sequences,). Returns (loss, mean KL): each sequence's token mean, then the mean over
    sequences."""
    ratio = torch.exp(logprobs - old_logprobs)
    advantage = advantages[:, None]
    surrogate = torch.minimum(ratio * advantage, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantage)
    kl = kl_to_reference(logprobs, reference_logprobs)
    mask = mask.to(logprobs.dtype)
    lengths = mask.sum(-1).clamp_min(1.0)
    per_sequence = ((surrogate - kl_weight * kl) * mask).sum(-1) / lengths
    return -per_sequence.mean(), ((kl * mask).sum(-1) / lengths).mean()
