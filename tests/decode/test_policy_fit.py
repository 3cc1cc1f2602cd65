"""The learned decoding policy: fitted as a contextual bandit, saved and loaded, and used by strategy auto."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.policy import PolicyFeatures, load_policy, prompt_features
from lmforge.decode.policy_fit import (
    _loo_picks,
    _penalty,
    _standardised,
    fit_policy,
    held_out_picks,
    log_arms,
)
from lmforge.decode.request import DecodeRequest
from lmforge.errors import ConfigError
from lmforge.metrics.rewards import RewardSpec, build_reward

ARMS = {"greedy": {}, "beam2": {"strategy": "beam", "num_beams": 2}}


def test_the_fitted_policy_picks_the_arm_that_pays_in_each_region_of_feature_space():
    torch.manual_seed(0)
    features = torch.randn(200, 5)
    utilities = torch.stack([features[:, 0], -features[:, 0]], dim=1) + 0.05 * torch.randn(200, 2)
    policy = fit_policy(features, utilities, ARMS)
    test = torch.randn(100, 5)
    expected = ["greedy" if x > 0 else "beam2" for x in test[:, 0].tolist()]
    assert sum(a == b for a, b in zip(policy.choose(test), expected, strict=True)) >= 95


def test_a_cost_weight_moves_choices_to_the_cheaper_arm():
    features = torch.randn(50, 3)
    rewards = torch.tensor([[0.50, 0.52]]).repeat(50, 1)  # beam slightly better …
    seconds = torch.tensor([[1.0, 3.0]]).repeat(50, 1)  # … at three times the cost
    assert set(fit_policy(features, rewards, ARMS).choose(features)) == {"beam2"}
    assert set(fit_policy(features, rewards - 0.05 * seconds, ARMS, cost_weight=0.05).choose(features)) == {"greedy"}


@pytest.mark.parametrize("reader", [PolicyFeatures(), PolicyFeatures(layer=0, length=True)])
def test_strategy_auto_decodes_each_prompt_with_its_arm(tiny_chat_llama, tmp_path, reader):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there", "a longer prompt about rain", "cats", "ok")]
    features = reader.read(model, prompts, tokenizer.pad_token_id)
    assert features.shape == (4, model.config.hidden_size + reader.length)
    utilities = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # alternate arms
    fit_policy(features, utilities, ARMS, ridge=1e-3, reader=reader).save(tmp_path)
    policy = load_policy(tmp_path)
    assert policy.features == reader
    meta = json.loads((tmp_path / "policy.json").read_text())
    (tmp_path / "policy.json").write_text(json.dumps(meta | {"features": {"layers": 3}}))
    with pytest.raises(ConfigError, match="'features' takes layer and length only"):
        load_policy(tmp_path)
    (tmp_path / "policy.json").write_text(json.dumps(meta))
    picks = policy.choose(features)
    assert picks == ["greedy", "beam2", "greedy", "beam2"]
    auto = generate(model, tokenizer, DecodeRequest(prompts,
                                                    DecodeParams(strategy="auto", policy=str(tmp_path), min_new_tokens=3),
                                                    6))
    for prompt, pick, candidates in zip(prompts, picks, auto, strict=True):
        alone = generate(model, tokenizer, DecodeRequest([prompt], DecodeParams(min_new_tokens=3, **ARMS[pick]), 6))[0]
        assert candidates[0].tokens == alone[0].tokens
        assert candidates[0].arm == pick


def test_strategy_auto_on_an_encoder_decoder_model_reads_the_encoder_it_runs(tiny_t5, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    prompts = [tokenizer(text)["input_ids"] for text in ("red dog", "the big cat runs", "a", "blue cat sleeps")]
    features = PolicyFeatures().read(model, prompts, tokenizer.pad_token_id)
    utilities = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    fit_policy(features, utilities, ARMS, ridge=1e-3).save(tmp_path)
    picks = load_policy(tmp_path).choose(features)
    assert picks == ["beam2", "greedy", "beam2", "greedy"]
    auto = generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(strategy="auto", policy=str(tmp_path)), 5,
                                                    batch_size=3))
    for prompt, pick, candidates in zip(prompts, picks, auto, strict=True):
        assert candidates[0].arm == pick
        assert candidates[0].tokens == generate(model, tokenizer, DecodeRequest([prompt], DecodeParams(**ARMS[pick]),
                                                                                5))[0][0].tokens


def test_features_of_the_input_embeddings_and_the_length(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    prompts = [[5, 6, 7], [8, 9]]
    features = PolicyFeatures(layer=0, length=True).read(model, prompts, pad_id=0)
    embeddings = model.get_input_embeddings().weight
    assert torch.allclose(features[1, :-1], embeddings[[8, 9]].mean(0))
    assert features[:, -1].tolist() == pytest.approx([math.log(4), math.log(3)])
    with torch.no_grad():
        hidden = model(torch.tensor([[5, 6, 7]]), output_hidden_states=True).hidden_states
    assert torch.allclose(prompt_features(model, prompts, 0, layer=1)[0], hidden[1][0].mean(0), atol=1e-5)
    assert torch.allclose(prompt_features(model, prompts, 0)[0], hidden[-1][0].mean(0), atol=1e-5)


def test_logged_rewards_and_seconds_per_arm(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there", "cats")]
    reward = build_reward([RewardSpec(name="length", target=3)])
    log = log_arms(model, tokenizer, prompts, [["x"], ["y"]], {k: DecodeParams(**v) for k, v in ARMS.items()}, reward, 4)
    assert log.rewards.shape == log.seconds.shape == log.tokens.shape == (2, 2) and (log.seconds > 0).all()
    assert len(log.texts[0]) == 2
    assert ((log.tokens >= 0) & (log.tokens <= 4)).all() and log.tokens.sum() > 0


def test_auto_needs_a_trained_policy(tmp_path):
    with pytest.raises(ValidationError, match="strategy auto needs policy"):
        DecodeParams(strategy="auto")
    with pytest.raises(ValidationError, match="policy does not apply to strategy 'greedy'"):
        DecodeParams(policy=str(tmp_path))
    with pytest.raises(ConfigError, match="holds no decoding policy"):
        load_policy(tmp_path)


def test_without_signal_in_the_features_the_policy_keeps_the_best_arm_on_average():
    torch.manual_seed(1)
    features = torch.randn(40, 30)  # more features than a few prompts can pin down
    utilities = torch.tensor([[0.6, 0.4]]) + 0.3 * torch.randn(40, 2)
    policy = fit_policy(features, utilities, ARMS)  # ridge chosen by leave-one-out
    assert set(policy.choose(torch.randn(50, 30))) == {"greedy"}


def test_held_out_picks_are_those_of_a_policy_refitted_without_each_prompt():
    torch.manual_seed(2)
    features, utilities = torch.randn(30, 4), torch.randn(30, 3).double()
    inputs = _standardised(features)[0]
    ridge = 1.0
    expected = []
    for i in range(30):
        kept = [j for j in range(30) if j != i]
        weight = torch.linalg.solve(inputs[kept].T @ inputs[kept] + _penalty(5, ridge), inputs[kept].T @ utilities[kept])
        expected.append(int((inputs[i] @ weight).argmax()))
    assert _loo_picks(inputs, utilities, ridge).tolist() == expected
    assert held_out_picks(features, utilities, ridge).tolist() == expected
