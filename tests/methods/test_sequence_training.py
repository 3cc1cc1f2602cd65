"""Sequence-level training end to end on a tiny chat model: rows split into prompt and reply, log-probs of
outputs, and GRPO / MRT / SCST runs through `lmforge train` that log rewards and raise them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.methods.sequence.params import SequenceParams
from lmforge.methods.sequence.train import SequenceObjective, candidate_params, split_rows, token_logprobs
from tests.conftest import make_pairs, write_jsonl


def test_split_rows_takes_the_last_learned_run_as_the_reply():
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 0, 0]]),
             "labels": torch.tensor([[-100, -100, 3, 4, 5, -100], [-100, 7, -100, 9, -100, -100]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])}
    prompts, replies = split_rows(batch)
    assert prompts == [[1, 2], [6, 7, 8]] and replies == [[3, 4, 5], [9]]


def test_token_logprobs_match_a_plain_forward(tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    picked, mask = token_logprobs(model, [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], pad_id=0)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    with torch.no_grad():
        logits = model(torch.tensor([[8, 11, 12, 13]])).logits.log_softmax(-1)[0]
    assert picked[1].tolist() == pytest.approx([logits[0, 11].item(), logits[1, 12].item(), logits[2, 13].item()], abs=1e-5)
    shorter_first, _ = token_logprobs(model, [[5, 6, 7], [4, 8]], [[9, 10], [11]], pad_id=0)  # logits kept from position 1
    assert shorter_first[0].tolist() == pytest.approx(picked[0, :2].tolist(), abs=1e-5)


def sequence_config(tmp_path, model, method: str, extra: str = "") -> str:
    write_jsonl(tmp_path / "pairs.jsonl", make_pairs(64, seed=0))
    config = tmp_path / f"{method}.yaml"
    config.write_text(
        "task: {name: generation, prompt: 'Translate: {source}', max_new_tokens: 8}\n"
        f"model: {model}\n"
        f"data: {{train: {tmp_path / 'pairs.jsonl'}, validation_fraction: 0.1, max_length: 64}}\n"
        f"train: {{output_dir: {tmp_path / method}, epochs: 1, batch_size: 4, lr: 3.0e-3, log_every_steps: 1,\n"
        "        tensorboard: false, eval_batch_size: 16}\n"
        f"tuning: {{sequence: {{method: {method}, samples: 4, max_new_tokens: 8, {extra}\n"
        "          rewards: [{name: regex, pattern: '(?s).*(chien|chat|rouge|bleu).*'}, {name: chrf, weight: 0.5}]}}\n",
        encoding="utf-8")
    return str(config)


@pytest.mark.parametrize(("method", "extra"), [("grpo", ""), ("mrt", ""), ("scst", ""),
                                             ("mrt", "candidates: beam, ce_weight: 0.5,")])
def test_sequence_training_logs_rewards_and_raises_them(tiny_chat_llama, tmp_path, capsys, method, extra):
    torch.manual_seed(0)
    assert main(["train", sequence_config(tmp_path, tiny_chat_llama, method, extra)]) == 0
    steps = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "mean_reward" in s]
    assert len(steps) >= 10 and all({"kl", "entropy", "mean_length"} <= set(s) for s in steps)
    first = sum(s["mean_reward"] for s in steps[:4]) / 4
    last = sum(s["mean_reward"] for s in steps[-4:]) / 4
    assert last > first
    assert (tmp_path / method / "rewards.png").read_bytes()[:4] == b"\x89PNG"
    if method == "grpo":
        assert all(s["kl"] >= 0 for s in steps)


def test_sequence_training_needs_a_generation_task(tiny_config, capsys):
    with open(tiny_config, "a", encoding="utf-8") as config:
        config.write("tuning: {sequence: {method: grpo, rewards: [{name: chrf}]}}\n")
    assert main(["train", str(tiny_config)]) != 0
    assert "tuning.sequence trains generation tasks" in capsys.readouterr().err


def test_beam_candidates_are_the_best_beams_and_suit_mrt_only():
    beam = candidate_params(SequenceParams(method="mrt", samples=3, candidates="beam", rewards=[{"name": "chrf"}]))
    assert (beam.strategy, beam.num_beams, beam.num_return_sequences) == ("beam", 3, 3)
    sampled = candidate_params(SequenceParams(method="grpo", samples=5, temperature=0.7, rewards=[{"name": "chrf"}]))
    assert (sampled.strategy, sampled.num_return_sequences, sampled.temperature) == ("sample", 5, 0.7)
    with pytest.raises(ValueError, match="candidates: beam suits mrt only"):
        SequenceParams(method="grpo", candidates="beam", rewards=[{"name": "chrf"}])


def test_ce_weight_adds_the_tasks_own_cross_entropy(tiny_chat_llama):
    """Beam candidates are deterministic, so the two losses differ by exactly ce_weight × the task's loss."""
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    task = SimpleNamespace(encoder_decoder=False, tokenizer=tokenizer, params=SimpleNamespace(stop_strings=[]),
                           text=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                           loss=lambda model, batch: (torch.tensor(2.5), None))
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9]]), "labels": torch.tensor([[-100, -100, -100, 8, 9]]),
             "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    def loss(ce_weight: float) -> float:
        params = SequenceParams(method="mrt", samples=2, candidates="beam", max_new_tokens=4, ce_weight=ce_weight,
                                rewards=[{"name": "chrf"}])
        return SequenceObjective(task, params)(model, batch)[0].item()
    assert loss(0.4) - loss(0.0) == pytest.approx(0.4 * 2.5, abs=1e-5)
