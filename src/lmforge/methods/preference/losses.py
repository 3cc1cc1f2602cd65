"""Preference losses over sequence log-probabilities, as TRL computes them (its formulas, checked in
tests/methods/test_preference_parity.py): DPO (sigmoid), IPO, SimPO, ORPO and KTO.

Inputs are per-sequence sums of the completion tokens' log-probabilities (`logps`), their token counts
(`lengths`) and, where the method has one, the reference model's sums. Each loss returns per-example
losses and the chosen/rejected rewards TRL logs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, shifted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p(token) over the labelled tokens, their count) per row: position t predicts token t + 1
    (`shifted`, a decoder-only model; an encoder-decoder's logits are aligned with its labels); labels are -100
    where not scored (prompt, padding)."""
    if shifted:
        logits, labels = logits[:, :-1], labels[:, 1:]
    logits = logits.float()
    mask = labels != IGNORE
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


def dpo(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
        beta: float, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023) with TRL's sigmoid loss; `label_smoothing` ε > 0 is conservative DPO (cDPO:
    the preference is taken as right with probability 1 − ε), as TRL's CPO/earlier DPO trainers write it."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    delta = chosen_ratio - rejected_ratio
    losses = -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def ipo(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
        chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor,
        beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IPO (Azar et al. 2023, Eq. 17) on per-token average log-ratios, as TRL normalises them."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    delta = chosen_ratio / chosen_lengths.clamp(min=1) - rejected_ratio / rejected_lengths.clamp(min=1)
    losses = (delta - 1 / (2 * beta)) ** 2
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def simpo(chosen: torch.Tensor, rejected: torch.Tensor, chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor,
          beta: float, gamma: float, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO (Meng et al. 2024): no reference; length-normalised log-probs with a target margin `gamma`
    (TRL's CPO trainer, loss_type simpo)."""
    chosen_avg, rejected_avg = chosen / chosen_lengths.clamp(min=1), rejected / rejected_lengths.clamp(min=1)
    logits = chosen_avg - rejected_avg - gamma / beta
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    return losses, beta * chosen_avg.detach(), beta * rejected_avg.detach()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x < 0, stable at both ends (Mächler 2012), as TRL's ORPO computes it."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo(chosen: torch.Tensor, rejected: torch.Tensor, chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor,
         chosen_nll: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO (Hong et al. 2024): the chosen reply's NLL minus λ (`beta`) × log σ(log odds ratio), on
    length-normalised log-probs; no reference."""
    chosen_avg = (chosen / chosen_lengths.clamp(min=1)).float()
    rejected_avg = (rejected / rejected_lengths.clamp(min=1)).float()
    log_odds = (chosen_avg - rejected_avg) - (_log1mexp(chosen_avg) - _log1mexp(rejected_avg))
    losses = chosen_nll - beta * F.logsigmoid(log_odds)
    return losses, beta * chosen_avg.detach(), beta * rejected_avg.detach()


def kto(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, beta: float,
        desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024) on unpaired rows: `desirable` marks the good completions; `kl` is the
    batch's (detached, clamped at 0) estimate of KL(policy ‖ reference) from mismatched prompt-completion
    pairs. Per-row losses and rewards (β × log-ratio)."""
    ratio = logps - ref_logps
    value = torch.where(desirable, 1 - F.sigmoid(beta * (ratio - kl)), 1 - F.sigmoid(beta * (kl - ratio)))
    weight = torch.where(desirable, torch.as_tensor(desirable_weight), torch.as_tensor(undesirable_weight))
    return weight.to(value) * value, beta * ratio.detach()


def kto_kl(kl_logps: torch.Tensor, kl_ref_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point: the mean log-ratio over mismatched pairs, detached and clamped at 0."""
    return (kl_logps - kl_ref_logps).mean().clamp(min=0).detach()
