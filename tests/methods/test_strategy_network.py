"""The multi-task strategy network: task-sampled batches, router features and gradients, and a two-task run
through `lmforge train` / `evaluate` / `predict` whose router picks each input's expert without a task id."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmforge.cli import main
from lmforge.data.batching import TaskSampledOrder
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.methods.strategy_network.experts import attach_experts, prompt_features
from lmforge.methods.strategy_network.params import StrategyNetworkParams
from lmforge.methods.strategy_network.task import prompt_mask
from tests.conftest import make_pairs, write_jsonl


def test_task_sampled_batches_hold_one_task_and_follow_the_temperature():
    tasks = [0] * 800 + [1] * 200
    for temperature, expected_share in ((1.0, 0.8), (1000.0, 0.5)):
        order = TaskSampledOrder(tasks, batch_size=10, seed=3, temperature=temperature)
        batches = order.batches()
        assert len(batches) == 100
        assert all(len({tasks[i] for i in batch}) == 1 for batch in batches)
        share = sum(tasks[batch[0]] == 0 for batch in batches) / len(batches)
        assert share == pytest.approx(expected_share, abs=0.12)
        assert order.batches() == batches  # a pure function of (seed, epoch): resumable
    order.set_epoch(1)
    assert order.batches() != batches


def test_small_tasks_cycle_through_fresh_shuffles():
    order = TaskSampledOrder([0] * 90 + [1] * 10, batch_size=5, seed=0, temperature=1000.0)
    small = [i for batch in order.batches() for i in batch if i >= 90]
    assert len(small) > 10 and set(small) == set(range(90, 100))


@pytest.fixture
def experts_model(tiny_chat_llama):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    return attach_experts(base, StrategyNetworkParams(r=4), ["copy", "translate"])


def test_prompt_features_see_only_the_prompt(experts_model):
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]]),
             "labels": torch.tensor([[-100, -100, -100, 8, 9, -100]])}
    assert prompt_mask(batch).tolist() == [[True, True, True, False, False, False]]
    whole = prompt_features(experts_model, batch["input_ids"], batch["attention_mask"], prompt_mask(batch))
    alone = prompt_features(experts_model, torch.tensor([[5, 6, 7]]), torch.tensor([[1, 1, 1]]))
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-5)


def test_router_and_the_batch_expert_get_gradients(experts_model, tiny_chat_llama):
    from lmforge.methods.strategy_network.task import StrategyNetworkTask
    from lmforge.tasks.generation import GenerationParams

    task = StrategyNetworkTask(GenerationParams(), StrategyNetworkParams(r=4), ["copy", "translate"])
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9], [5, 7, 7, 9, 9]]),
             "attention_mask": torch.ones(2, 5, dtype=torch.long),
             "labels": torch.tensor([[-100, -100, -100, 8, 9], [-100, -100, 7, 9, 9]]),
             "task_id": torch.tensor([1, 1])}
    loss, _ = task.loss(experts_model, batch)
    loss.backward()
    grads = {name: p.grad for name, p in experts_model.named_parameters()}
    assert grads["strategy_router.linear.weight"].abs().sum() > 0
    translate = [g for name, g in grads.items() if "lora_B.translate" in name]
    copy = [g for name, g in grads.items() if "lora_" in name and ".copy." in name]
    assert translate and all(g is not None for g in translate)
    assert copy and all(g is None for g in copy)  # the other task's expert is untouched by this batch
    assert {"router_loss", "router_accuracy"} <= set(task.step_stats)


def two_task_rows(count: int, seed: int) -> list[dict]:
    """Toy 'translate' rows (word-by-word dictionary) and 'copy' rows (the words as they are)."""
    rows = []
    for i, pair in enumerate(make_pairs(count, seed)):
        if i % 2:
            rows.append({"task": "translate", "source": f"Translate: {pair['source']}", "target": pair["target"]})
        else:
            rows.append({"task": "copy", "source": f"User: {pair['source']}", "target": pair["source"]})
    return rows


def strategy_config(tmp_path, model, extra: str = "") -> str:
    write_jsonl(tmp_path / "train.jsonl", two_task_rows(160, seed=0))
    write_jsonl(tmp_path / "validation.jsonl", two_task_rows(20, seed=1))
    config = tmp_path / "strategy.yaml"
    config.write_text(
        "task: {name: generation, max_new_tokens: 8}\n"
        f"model: {model}\n"
        f"data: {{train: {tmp_path / 'train.jsonl'}, validation: {tmp_path / 'validation.jsonl'}, max_length: 64}}\n"
        f"train: {{output_dir: {tmp_path / 'run'}, epochs: 2, batch_size: 8, lr: 1.0e-2, log_every_steps: 1,\n"
        "        tensorboard: false, eval_batch_size: 16}\n"
        f"tuning: {{strategy_network: {{r: 4, temperature: 1.0{extra}}}}}\n", encoding="utf-8")
    return str(config)


@pytest.fixture(scope="module")
def trained_run(tiny_chat_llama, tmp_path_factory):
    """One two-task strategy-network run shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("strategy")
    torch.manual_seed(0)
    assert main(["train", strategy_config(folder, tiny_chat_llama)]) == 0
    return folder / "run"


def test_strategy_network_trains_routes_and_reloads(trained_run, tmp_path):
    run = trained_run
    report = json.loads((run / "report.json").read_text())
    assert set(report["tasks"]) == {"copy", "translate"}
    assert all({"bleu", "chrf", "exact_match", "count"} <= set(s) for s in report["tasks"].values())
    assert report["routing_accuracy"] == 100.0  # the prompts differ in their first word: the router learns it
    assert report["router"] == {"copy": {"copy": 10}, "translate": {"translate": 10}}
    for expert in ("copy", "translate"):
        assert (run / "model" / expert / "adapter_model.safetensors").is_file()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("router_loss" in s for s in steps)
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(p["expert"] in ("copy", "translate") and 0 < p["expert_probability"] <= 1 for p in predictions)

    assert main(["evaluate", str(run)]) == 0
    assert "routing_accuracy" in json.loads((run / "evaluations" / "validation" / "report.json").read_text())
    rows = tmp_path / "unlabelled.jsonl"
    write_jsonl(rows, [{"source": "Translate: red dog"}, {"source": "User: red dog"}])  # no task field
    assert main(["predict", str(run), "--input", str(rows), "--output", str(tmp_path / "out.jsonl")]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["expert"] for o in out] == ["translate", "copy"]


def test_generate_routes_each_prompt_to_its_expert(trained_run):
    from lmforge.decode.generate import generate
    from lmforge.recipes.generate import open_generator

    generator = open_generator(str(trained_run))
    expected = []
    for expert, prompt in (("translate", "Translate: red dog"), ("copy", "User: red dog")):
        generator.model.set_adapter(expert)  # what that expert decodes alone, no router
        found = generate(generator.model, generator.tokenizer, DecodeRequest(generator.prompt_ids([prompt]),
                                                                             generator.decode,
                                                                             generator.max_new_tokens,
                                                                             generator.stop_strings, 1))
        expected.append(found[0][0].tokens)
    generator.model.set_adapter("copy")
    routed = generator.run(["Translate: red dog", "User: red dog"], generator.decode, batch_size=2)
    assert [c[0].tokens for c in routed] == expected
    assert generator.model.active_adapter == "copy"  # routing leaves the active expert as it was


def test_export_refuses_a_strategy_network_run_and_serving_it_needs_its_own_weights(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--output", str(tmp_path / "merged")]) == 2
    assert "no single set of weights to merge" in capsys.readouterr().err
    assert main(["serve", str(trained_run), "--weights", "int8"]) == 2
    assert "is a strategy network, served with its weights as loaded" in capsys.readouterr().err


def test_the_scheduler_decodes_each_prompt_with_its_expert(trained_run):
    from lmforge.decode.generate import generate
    from lmforge.recipes.served_model import served_model
    from lmforge.serve.scheduler import Job, Scheduler

    served = served_model(str(trained_run))
    model, tokenizer = served.model, served.tokenizer
    prompts = [tokenizer(text)["input_ids"] for text in ("Translate: red dog", "User: red dog", "Translate: blue cat",
                                                         "User: big cat")]
    routes = served.experts.route(prompts)
    assert set(routes) == {"copy", "translate"}
    expected = []
    for expert, prompt in zip(routes, prompts, strict=True):
        model.set_adapter(expert)
        expected.append(generate(model, tokenizer, DecodeRequest([prompt], DecodeParams(), 6))[0][0].tokens)
    model.set_adapter("copy" if routes[0] == "translate" else "translate")  # the scheduler must switch

    scheduler = Scheduler(model, tokenizer, experts=served.experts)
    heard: dict[int, list[int]] = {}

    def hear(rows: list[int], tokens: list[int]) -> None:
        for row, token in zip(rows, tokens, strict=True):
            heard.setdefault(row, []).append(token)

    split = scheduler.submit(Job(prompts, DecodeParams(), 6, [], on_tokens=hear))  # one request, both experts
    alone = [scheduler.submit(Job([p], DecodeParams(), 6, [])) for p in prompts]  # the batch, an expert at a time
    beams = scheduler.submit(Job([prompts[1]], DecodeParams(strategy="beam", num_beams=2), 6, []))
    assert [c[0].tokens for c in split.result(60)] == expected
    assert [f.result(60)[0][0].tokens for f in alone] == expected
    beams.result(60)
    scheduler.close()
    assert [heard.get(row, [])[:len(tokens)] for row, tokens in enumerate(expected)] == expected  # rows as asked
    model.set_adapter(routes[1])
    assert beams.result()[0][0].tokens == generate(model, tokenizer, DecodeRequest([prompts[1]],
                                                                                   DecodeParams(strategy="beam", num_beams=2),
                                                                                   6))[0][0].tokens


def test_the_server_answers_through_the_router(trained_run):
    from fastapi.testclient import TestClient

    from lmforge.recipes.served_model import served_model
    from lmforge.serve.app import create_app

    served = served_model(str(trained_run), name="multi")
    with TestClient(create_app(served)) as client:
        chat = [client.post("/v1/chat/completions", json={
            "model": "multi", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}).json() for text in ("Translate: red dog", "User: red dog")]
        assert [c["lmforge"]["expert"] for c in chat] == ["translate", "copy"]
        completion = client.post("/v1/completions", json={"model": "multi", "max_tokens": 6, "temperature": 0,
                                                          "prompt": ["Translate: red dog", "User: red dog"]}).json()
        assert len(completion["choices"]) == 2
        assert completion["lmforge"]["experts"] == served.experts.route(
            [served.tokenizer(t)["input_ids"] for t in ("Translate: red dog", "User: red dog")])


@pytest.mark.parametrize(("rows", "message"), [
    ([{"source": "a", "target": "b"}] * 4, "needs a 'task' field on every training row"),
    ([{"task": "one", "source": "a", "target": "b"}] * 4, "needs rows from at least 2 tasks"),
    ([{"task": "a.b", "source": "a", "target": "b"}, {"task": "c", "source": "a", "target": "b"}] * 2,
     "task name 'a.b'"),
])
def test_bad_multi_task_rows_are_one_line_errors(tiny_chat_llama, tmp_path, capsys, rows, message):
    config = strategy_config(tmp_path, tiny_chat_llama)
    write_jsonl(tmp_path / "train.jsonl", rows)
    assert main(["train", config]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_strategy_network_refuses_other_body_strategies(tiny_chat_llama, tmp_path, capsys):
    config = strategy_config(tmp_path, tiny_chat_llama)
    text = open(config, encoding="utf-8").read().replace("tuning: {strategy_network: {r: 4, temperature: 1.0}}",
                                                        "tuning: {strategy_network: {r: 4}, peft: {method: lora}}")
    open(config, "w", encoding="utf-8").write(text)
    assert main(["train", config]) == 2
    assert "strategy_network brings its own LoRA experts and loss; drop peft" in capsys.readouterr().err
