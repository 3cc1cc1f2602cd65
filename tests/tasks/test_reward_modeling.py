"""Reward modeling: the Bradley–Terry loss, a tiny reward model that learns, is saved as a plain HF reward model,
predicts and serves /v1/score; decoders score the last real token whatever the padding; a reward-model run is a
GRPO reward (the prompts reach it) and a run that is not one is refused in one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.data.batching import pad_batch
from lmforge.data.preference import PreferenceExample
from lmforge.runs.served_task import served_task
from lmforge.serve.app import create_app
from lmforge.tasks.reward_modeling import RewardModeling, RewardModelingParams, bradley_terry_loss
from tests.conftest import FILLER, NEGATIVE, POSITIVE, write_jsonl


def review_pairs(count: int, seed: int) -> list[dict]:
    """A question about a film; the review with a positive word chosen over one with a negative word."""
    rng = random.Random(seed)

    def review(words: list[str]) -> str:
        return " ".join(rng.sample(FILLER, 3) + [rng.choice(words)] + rng.sample(FILLER, 2))
    return [{"prompt": f"what did you think of the {rng.choice(['film', 'story', 'plot'])}",
             "chosen": review(POSITIVE), "rejected": review(NEGATIVE)} for _ in range(count)]


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_bert) -> Path:
    folder = tmp_path_factory.mktemp("reward")
    train = write_jsonl(folder / "train.jsonl", review_pairs(160, 0))
    validation = write_jsonl(folder / "validation.jsonl", review_pairs(40, 1))
    config = folder / "reward.yaml"
    config.write_text(f"task: reward-modeling\nmodel: {tiny_bert}\ndata: {{train: {train}, validation: {validation}, "
                      f"max_length: 48}}\ntrain: {{output_dir: {folder / 'run'}, epochs: 4, batch_size: 16, lr: 3.0e-3, "
                      "metric: reward_margin, tensorboard: false}\n", encoding="utf-8")
    assert main(["train", str(config)]) == 0
    return folder / "run"


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (-torch.log(torch.sigmoid(torch.tensor(1.0))) - torch.log(torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert torch.isclose(bradley_terry_loss(chosen, rejected), expected)
    centred = expected + 0.1 * ((3.0 ** 2 + 1.0 ** 2) / 2)
    assert torch.isclose(bradley_terry_loss(chosen, rejected, center=0.1), centred)


def test_a_tiny_reward_model_learns_and_is_a_plain_hf_reward_model(reward_run, tmp_path, capsys):
    report = json.loads((reward_run / "report.json").read_text())
    assert report["pairwise_accuracy"] >= 0.8 and report["reward_margin"] > 0, report
    assert "longer_completion_baseline" in report
    model = AutoModelForSequenceClassification.from_pretrained(reward_run / "model")
    assert model.config.num_labels == 1  # what TRL's RewardTrainer and vLLM's reward models read
    held = review_pairs(8, 11)  # held-out pairs: chosen replies first, then the rejected ones
    rows = write_jsonl(tmp_path / "score.jsonl", [{"prompt": pair["prompt"], "completion": pair[side]}
                                                 for side in ("chosen", "rejected") for pair in held])
    capsys.readouterr()
    assert main(["predict", str(reward_run), "--input", str(rows), "--output", str(tmp_path / "out.jsonl")]) == 0
    rewards = [json.loads(line)["reward"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    good, bad = sum(rewards[:8]) / 8, sum(rewards[8:]) / 8  # (a tiny model's bf16 rewards of one pair can tie)
    assert good > bad
    assert main(["evaluate", str(reward_run)]) == 0
    assert "pairwise_accuracy" in capsys.readouterr().out


def test_the_score_endpoint_answers_rewards(reward_run):
    with TestClient(create_app(served_task(reward_run, "rm"))) as client:
        held = review_pairs(8, 7)  # held-out pairs; the first prompt as chat messages
        rows = [{"prompt": [{"role": "user", "content": held[0]["prompt"]}] if i == 0 else pair["prompt"],
                 "completion": pair[side]} for side in ("chosen", "rejected") for i, pair in enumerate(held)]
        response = client.post("/v1/score", json={"model": "rm", "input": rows})
        assert response.status_code == 200, response.text
        rewards = [row["reward"] for row in response.json()["data"]]
        good, bad = sum(rewards[:8]) / 8, sum(rewards[8:]) / 8  # (a tiny model's bf16 rewards of one pair can tie)
        assert good > bad and response.json()["task"] == "reward-modeling"
        missing = client.post("/v1/score", json={"model": "rm", "input": {"prompt": "x"}})
        assert missing.status_code == 400 and "completion" in missing.json()["error"]["message"]
        empty = client.post("/v1/score", json={"model": "rm", "input": {"prompt": " ", "completion": "x"}})
        assert empty.status_code == 400


def test_a_decoder_reward_is_the_same_padded_or_alone(tiny_chat_llama):
    task = RewardModeling(RewardModelingParams())
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    model = task.build_model(str(tiny_chat_llama), True, False).eval()
    examples = [PreferenceExample([{"role": "user", "content": "hi"}], "hello there, how are you doing today", "a", "1"),
                PreferenceExample("a plain prompt", "ok", "no", "2")]
    features = task.encode(examples, tokenizer, 64)
    assert tokenizer.decode(features[0]["input_ids"]).startswith("<|im_start|>user")  # through the chat template
    with torch.no_grad():
        batched = task.forward(model, pad_batch(features, tokenizer.pad_token_id))
        alone = [task.forward(model, pad_batch([feature], tokenizer.pad_token_id))[0] for feature in features]
    torch.testing.assert_close(batched, torch.stack(alone), atol=1e-5, rtol=1e-5)


def grpo_config(folder: Path, policy: Path, reward: str) -> Path:
    rows = [{"source": f"what did you think of the {w}", "target": f"the {w} was good"} for w in FILLER * 2]
    write_jsonl(folder / "prompts.jsonl", rows)
    path = folder / "grpo.yaml"
    path.write_text(f"task: {{name: generation, max_new_tokens: 6}}\nmodel: {policy}\n"
                    f"data: {{train: {folder / 'prompts.jsonl'}, max_length: 48}}\n"
                    f"train: {{output_dir: {folder / 'grpo'}, epochs: 1, batch_size: 4, lr: 1.0e-3, log_every_steps: 1, "
                    "tensorboard: false}\n"
                    f"tuning: {{sequence: {{method: grpo, samples: 2, max_new_tokens: 6, rewards: [{reward}]}}}}\n",
                    encoding="utf-8")
    return path


def test_a_reward_model_run_is_a_grpo_reward_that_reads_the_prompts(reward_run, tiny_chat_llama, tmp_path,
                                                                    monkeypatch):
    import lmforge.methods.sequence.train as sequence_train

    seen: list = []
    original = sequence_train.SequenceObjective.__call__

    def spy(self, model, batch):
        wrapped = self.reward
        self.reward = lambda outputs, references, prompts=None: seen.extend(prompts) or wrapped(outputs, references,
                                                                                                 prompts)
        try:
            return original(self, model, batch)
        finally:
            self.reward = wrapped
    monkeypatch.setattr(sequence_train.SequenceObjective, "__call__", spy)
    config = grpo_config(tmp_path, tiny_chat_llama, f"{{name: reward_model, run: {reward_run}}}")
    assert main(["train", str(config)]) == 0
    steps = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if "mean_reward" in s]
    assert seen and all(p.startswith("what did you think of the ") for p in seen)  # as the rows wrote them


@pytest.mark.parametrize("which", ["classification run", "no run"])
def test_a_reward_model_that_is_not_one_is_one_line_and_no_run_directory(which, tiny_config, tiny_chat_llama,
                                                                        tmp_path, capsys):
    other = tmp_path / "run"  # tiny_config's output_dir
    if which == "classification run":
        assert main(["train", str(tiny_config), "train.epochs=1"]) == 0
    folder = tmp_path / "policy"
    folder.mkdir()
    capsys.readouterr()
    assert main(["train", str(grpo_config(folder, tiny_chat_llama, f"{{name: reward_model, run: {other}}}"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    expected = "is a text-classification run, not a reward-modeling run" if which == "classification run" else \
        "does not exist"
    assert expected in err and not (folder / "grpo").exists()
