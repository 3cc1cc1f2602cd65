"""Train a learned decoding policy (`decode: {strategy: auto, policy: DIR}`) as a contextual bandit.

Every training prompt is decoded with every arm (a strategy and its settings); each (prompt, arm) logs the
reward of the output (any `RewardFn` of sequence training: BLEU, chrF, exact match, …) and the seconds it
took. The utility of an arm is reward − cost_weight × seconds; a ridge regression from the prompt's
features (`decode.policy.PolicyFeatures`) to each arm's utility is the policy, which then picks the arm
with the highest predicted utility.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.policy import DecodingPolicy, PolicyFeatures
from lmforge.decode.request import DecodeRequest
from lmforge.metrics.rewards import RewardFn


@dataclass
class ArmLog:
    """What each arm did on each prompt: (prompts, arms) rewards, seconds and output tokens, and the output texts."""

    arms: list[str]
    rewards: torch.Tensor
    seconds: torch.Tensor
    texts: list[list[str]]
    tokens: torch.Tensor

    def utilities(self, cost_weight: float) -> torch.Tensor:
        return self.rewards - cost_weight * self.seconds


def log_arms(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
             references: list[list[str]], arms: dict[str, DecodeParams], reward: RewardFn, max_new_tokens: int,
             stop_strings: list[str] | None = None) -> ArmLog:
    """Decode each prompt alone with each arm (so the seconds are the prompt's own) and score the outputs."""
    rewards = torch.zeros(len(prompts), len(arms))
    seconds = torch.zeros(len(prompts), len(arms))
    tokens = torch.zeros(len(prompts), len(arms), dtype=torch.long)
    texts: list[list[str]] = [[] for _ in prompts]
    for i, prompt in enumerate(prompts):
        for j, params in enumerate(arms.values()):
            start = time.perf_counter()
            [best, *_] = generate(model, tokenizer, DecodeRequest([prompt], params, max_new_tokens, stop_strings))[0]
            seconds[i, j] = time.perf_counter() - start
            tokens[i, j] = len(best.tokens)
            texts[i].append(tokenizer.decode(best.tokens, skip_special_tokens=True).strip())
        rewards[i] = torch.tensor(reward(texts[i], [references[i]] * len(arms)))
    return ArmLog(list(arms), rewards, seconds, texts, tokens)


RIDGES = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def _design(features: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.cat([(features - mean) / scale, torch.ones(len(features), 1)], dim=1).double()


def _penalty(size: int, ridge: float) -> torch.Tensor:
    penalty = ridge * torch.eye(size, dtype=torch.float64)
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return penalty


def _loo_picks(inputs: torch.Tensor, utilities: torch.Tensor, ridge: float) -> torch.Tensor:
    """(prompts,) the arm a ridge policy picks for each prompt when fitted without that prompt."""
    hat = inputs @ torch.linalg.solve(inputs.T @ inputs + _penalty(inputs.shape[1], ridge), inputs.T)
    leverage = hat.diagonal()[:, None]
    predicted = (hat @ utilities - leverage * utilities) / (1 - leverage).clamp(min=1e-6)
    return predicted.argmax(dim=1)


def leave_one_out_value(inputs: torch.Tensor, utilities: torch.Tensor, ridge: float) -> float:
    """Mean utility of the arms a ridge policy picks for each prompt when fitted without that prompt."""
    return float(utilities.gather(1, _loo_picks(inputs, utilities, ridge)[:, None]).mean())


def _standardised(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(design matrix with a bias column, feature means, feature scales)."""
    features = features.float()
    mean = features.mean(dim=0)
    scale = features.std(dim=0).clamp(min=1e-6) if len(features) > 1 else torch.ones(features.shape[1])
    return _design(features, mean, scale), mean, scale


def _best_ridge(inputs: torch.Tensor, targets: torch.Tensor) -> float:
    return max(RIDGES, key=lambda r: (round(leave_one_out_value(inputs, targets, r), 9), r))


def best_ridge(features: torch.Tensor, utilities: torch.Tensor) -> float:
    """The one of `RIDGES` whose leave-one-out picks earn the most (ties: the larger, i.e. the simpler policy)."""
    return _best_ridge(_standardised(features)[0], utilities.double())


def held_out_picks(features: torch.Tensor, utilities: torch.Tensor, ridge: float) -> torch.Tensor:
    """(prompts,) each prompt's arm as picked by the policy fitted on the other prompts: what to expect of the
    policy on prompts it has not seen."""
    return _loo_picks(_standardised(features)[0], utilities.double(), ridge)


def fit_policy(features: torch.Tensor, utilities: torch.Tensor, arms: dict[str, dict], cost_weight: float = 0.0,
               ridge: float | None = None, reader: PolicyFeatures = PolicyFeatures()) -> DecodingPolicy:
    """Ridge regression from standardised features (read by `reader`) to each arm's utility, (prompts, arms);
    without `ridge`, `best_ridge`'s."""
    inputs, mean, scale = _standardised(features)
    targets = utilities.double()
    ridge = _best_ridge(inputs, targets) if ridge is None else ridge
    weight = torch.linalg.solve(inputs.T @ inputs + _penalty(inputs.shape[1], ridge), inputs.T @ targets)
    return DecodingPolicy(arms, mean, scale, weight.float(), cost_weight, reader)
