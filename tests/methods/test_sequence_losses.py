"""Sequence-level losses against hand-computed values on tiny inputs; rewards' edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.methods.sequence.losses import group_advantages, grpo_loss, kl_to_reference, mrt_loss, scst_loss
from lmforge.metrics.rewards import RewardSpec, build_reward


def test_mrt_is_the_expected_risk_under_renormalised_candidates():
    logprobs = torch.tensor([[math.log(0.2), math.log(0.6)]])  # two candidates: Q = (0.25, 0.75)
    rewards = torch.tensor([[1.0, 0.4]])  # risks 0 and 0.6
    assert mrt_loss(logprobs, rewards).item() == pytest.approx(0.75 * 0.6)
    # sharpness 0 flattens Q to uniform
    assert mrt_loss(logprobs, rewards, sharpness=0.0).item() == pytest.approx(0.5 * 0.6)
    # the gradient moves probability toward the better candidate
    logprobs = logprobs.clone().requires_grad_(True)
    mrt_loss(logprobs, rewards).backward()
    assert logprobs.grad[0, 0] < 0 < logprobs.grad[0, 1]


def test_scst_uses_the_greedy_reward_as_baseline():
    logprobs = torch.tensor([-2.0, -1.0], requires_grad=True)
    loss = scst_loss(logprobs, torch.tensor([0.9, 0.2]), torch.tensor([0.5, 0.5]))
    assert loss.item() == pytest.approx(-((0.4 * -2.0) + (-0.3 * -1.0)) / 2)
    loss.backward()
    assert logprobs.grad.tolist() == pytest.approx([-0.2, 0.15])  # raise the better-than-greedy sample


def test_group_advantages_are_standardised_within_each_prompt():
    advantages = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    assert advantages[0].tolist() == pytest.approx([1.0, -1.0, -1.0, 1.0], abs=1e-5)
    assert advantages[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # one reward for all: nothing to learn


def test_kl_is_zero_for_identical_policies_and_positive_otherwise():
    same = torch.tensor([[-1.0, -0.5, -2.0]])
    assert kl_to_reference(same, same).abs().max().item() == 0.0
    other = kl_to_reference(same, same - 0.3)
    assert (other > 0).all()
    assert other[0, 0].item() == pytest.approx(math.exp(-0.3) + 0.3 - 1)


def test_grpo_by_hand():
    logprobs = torch.tensor([[-1.0, -1.0], [-2.0, -0.5]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0], [-2.0, -1.0]])  # 2nd sequence's 2nd token: ratio e^0.5 ≈ 1.65, clipped to 1.2
    mask = torch.tensor([[1, 1], [1, 0]])  # the 2nd sequence has one generated token
    advantages = torch.tensor([1.0, 2.0])
    loss, kl = grpo_loss(logprobs, old, logprobs.detach(), advantages, mask, clip=0.2, kl_weight=0.1)
    assert kl.item() == 0.0  # reference = policy
    assert loss.item() == pytest.approx(-(1.0 + 2.0) / 2)  # ratios 1 on every kept token
    unmasked, _ = grpo_loss(logprobs, old, logprobs.detach(), advantages, torch.ones(2, 2), clip=0.2)
    assert unmasked.item() == pytest.approx(-(1.0 + (2.0 + 1.2 * 2.0) / 2) / 2)  # the clip caps the 2nd token
    loss.backward()
    assert logprobs.grad is not None and logprobs.grad[1, 1] == 0  # masked tokens get no gradient


def test_rewards_by_name_with_weights_and_edge_cases():
    reward = build_reward([RewardSpec(name="exact_match"), RewardSpec(name="length", target=2, weight=0.5)])
    assert reward(["Le chien", ""], [["le chien."], ["x"]]) == pytest.approx([1.0, 0.0 + 0.5 * -1.0])
    chrf = build_reward([RewardSpec(name="chrf")])
    assert chrf(["", "ünïcode ✓ text"], [["a cat"], ["ünïcode ✓ text"]]) == pytest.approx([0.0, 1.0])
    assert chrf(["no reference"], [[]]) == [0.0]
    bleu = build_reward([RewardSpec(name="bleu")])
    assert 0 < bleu(["the cat sat on a mat"], [["the cat sat on the mat"]])[0] < 1
    fmt = build_reward([RewardSpec(name="regex", pattern=r"Answer: \d+"), RewardSpec(name="json", weight=2)])
    assert fmt(["Answer: 42", "answer 42", "{\"a\": 1}", ""], [[]] * 4) == [1.0, 0.0, 2.0, 0.0]
    f1 = build_reward([RewardSpec(name="token_f1")])
    assert f1(["a red big dog"], [["the big red cat", "dog"]])[0] == pytest.approx(2 / 3)


def test_a_users_own_reward_function(tmp_path):
    (tmp_path / "mine.py").write_text("def short(outputs, references):\n    return [1.0 / (1 + len(o)) for o in outputs]\n")
    reward = build_reward([RewardSpec(name="python", function=f"{tmp_path / 'mine.py'}:short", allow_code=True)])
    assert reward(["", "abc"], [[], []]) == [1.0, 0.25]


def test_a_python_reward_runs_no_code_without_allow_code(tmp_path):
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\ndef f(o, r):\n    return [0.0]\n")
    with pytest.raises(ValueError, match="add allow_code: true"):
        RewardSpec(name="python", function=f"{tmp_path / 'evil.py'}:f")
    assert not (tmp_path / "ran").exists()


def test_bad_reward_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="reward 'bleurt' is unknown; choose one of: bleu, chrf"):
        RewardSpec(name="bleurt")
    with pytest.raises(ConfigError, match="reward regex: set pattern"):
        build_reward([RewardSpec(name="regex")])
    with pytest.raises(ConfigError, match="not a valid regex"):
        build_reward([RewardSpec(name="regex", pattern="(")])
    with pytest.raises(ConfigError, match="no such file"):
        build_reward([RewardSpec(name="python", function=f"{tmp_path / 'nope.py'}:f", allow_code=True)])
    with pytest.raises(ConfigError, match="give at least one"):
        build_reward([])


def test_a_classifier_run_as_reward(tiny_config, tmp_path, capsys):
    from pathlib import Path

    from lmforge.cli import main
    from lmforge.runs.served_task import served_task

    assert main(["train", str(tiny_config), "train.epochs=4"]) == 0
    loader = lambda run: served_task(Path(run))  # noqa: E731
    reward = build_reward([RewardSpec(name="classifier", run=str(tmp_path / "run"), label="pos")], loader)
    values = reward(["a great wonderful film", "an awful terrible film", ""], [[], [], []])
    assert all(0 <= v <= 1 for v in values) and values[0] > values[1]
    with pytest.raises(ConfigError, match="label 'happy' is not one of"):
        build_reward([RewardSpec(name="classifier", run=str(tmp_path / "run"), label="happy")], loader)(["x"], [[]])
    with pytest.raises(ConfigError, match="no way to load a run"):
        build_reward([RewardSpec(name="classifier", run="r", label="pos")])
