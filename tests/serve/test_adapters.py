"""Many LoRA runs on one base: `lmforge serve BASE --adapter NAME=RUN_DIR ...` — the request's model picks the adapter,
/v1/models lists them, rows of different adapters decode in one continuous batch with each adapter's greedy tokens
equal to serving its run alone; names not served, runs of another base or without an adapter are refused."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from lmforge.cli import main
from lmforge.decode.continuous import ContinuousBatch, Request
from lmforge.decode.params import DecodeParams
from lmforge.errors import ConfigError, LmforgeError
from lmforge.recipes.served_model import adapter_runs, attach_adapters, served_model
from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions
from tests.conftest import make_pairs, write_jsonl
from tests.serve.conftest import running

PROMPTS = ["red dog", "blue cat sleeps", "a green"]


@pytest.fixture(scope="module")
def lora_runs(tiny_chat_llama, tmp_path_factory) -> dict:
    """Three LoRA runs of the tiny chat model, each trained on its own toy data (so their outputs differ)."""
    folder = tmp_path_factory.mktemp("lora-runs")
    runs = {}
    for n, name in enumerate(["fr", "echo", "upper"]):
        pairs = make_pairs(24, seed=n)
        rows = [{"source": p["source"], "target": {"fr": p["target"], "echo": p["source"],
                                                   "upper": p["source"].upper()}[name]} for p in pairs]
        data = write_jsonl(folder / f"{name}.jsonl", rows)
        config = folder / f"{name}.yaml"
        config.write_text(f"task: {{name: generation, max_new_tokens: 6}}\nmodel: {tiny_chat_llama}\n"
                          f"data: {{train: {data}, max_length: 48}}\ntuning: {{peft: {{method: lora, r: 4}}}}\n"
                          f"train: {{output_dir: {folder / name}, epochs: 2, batch_size: 8, lr: 2.0e-2, seed: {n}, "
                          "tensorboard: false}\n", encoding="utf-8")
        assert main(["train", str(config)]) == 0
        runs[name] = folder / name
    return runs


def alone(run, prompts: list[list[int]], tokenizer) -> list[list[int]]:
    """Greedy tokens of each prompt served by the run on its own, one batch."""
    model = served_model(str(run)).model
    batch = ContinuousBatch(model, tokenizer)
    requests = [Request([p], DecodeParams(), 6, []) for p in prompts]
    batch.add(*requests)
    while batch.rows:
        batch.step()
    return [r.future.result()[0][0].tokens for r in requests]


def test_rows_of_different_adapters_decode_together_as_each_run_alone(tiny_chat_llama, lora_runs):
    served = served_model(str(tiny_chat_llama))
    attach_adapters(served, adapter_runs([f"{n}={r}" for n, r in lora_runs.items()], str(tiny_chat_llama), None, False,
                                         "fp32", "torch", False))
    tokenizer = served.tokenizer
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    batch = ContinuousBatch(served.model, tokenizer, mixed_adapters=True)
    names = [None, *lora_runs]  # the base and every adapter, the same prompts each, in one batch
    requests = {name: [Request([p], DecodeParams(), 6, [], adapter=name) for p in prompts] for name in names}
    batch.add(*[r for rs in requests.values() for r in rs])
    assert batch.rows == len(names) * len(prompts)
    while batch.rows:
        batch.step()
    mixed = {name: [r.future.result()[0][0].tokens for r in rs] for name, rs in requests.items()}
    for name, run in lora_runs.items():
        assert mixed[name] == alone(run, prompts, tokenizer), name
    assert mixed[None] == alone(tiny_chat_llama, prompts, tokenizer)
    assert len({tuple(map(tuple, outputs)) for outputs in mixed.values()}) > 1  # the adapters do differ
    base_weights = sum(p.numel() for n, p in served.model.named_parameters() if "lora_" not in n)
    assert base_weights == sum(p.numel() for p in served_model(str(tiny_chat_llama)).model.parameters())  # one base


def test_the_server_answers_each_adapter_by_name_in_one_batch(tiny_chat_llama, lora_runs):
    served = served_model(str(tiny_chat_llama), name="base")
    attach_adapters(served, adapter_runs([f"{n}={r}" for n, r in lora_runs.items()], str(tiny_chat_llama), "base",
                                         False, "fp32", "torch", False))
    app = create_app(served, ServeOptions(max_batch=16))
    with running(app) as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in listed] == ["base", *lora_runs] and listed[1]["parent"] == "base"

        def ask(model: str, prompt: str) -> str:
            body = {"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0}
            response = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
            assert response.status_code == 200, response.text
            assert response.json()["model"] == model
            return response.json()["choices"][0]["text"]
        asks = [(model, prompt) for model in ["base", *lora_runs] for prompt in PROMPTS] * 2
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda a: ask(*a), asks))
        half = len(asks) // 2
        assert answers[:half] == answers[half:]  # the same whatever its neighbours in the batch
        missing = httpx.post(f"{url}/v1/completions", json={"model": "de", "prompt": "x"})
        assert missing.status_code == 404 and "'fr'" in missing.json()["error"]["message"]
    assert app.state.scheduler.batch.steps > 0


def test_bad_adapters_are_one_line_at_start(tiny_chat_llama, lora_runs, tiny_config, tmp_path):
    other_base = tmp_path / "other-llama"
    shutil.copytree(tiny_chat_llama, other_base)
    cases = [
        (["fr"], "give NAME=RUN_DIR"),
        ([f"fr={lora_runs['fr']}", f"fr={lora_runs['echo']}"], "the name 'fr' is taken"),
        ([f"fr={tmp_path / 'nowhere'}"], "does not exist"),
    ]
    for specs, words in cases:
        with pytest.raises(LmforgeError, match=words):
            adapter_runs(specs, str(tiny_chat_llama), None, False, "fp32", "torch", False)
    with pytest.raises(ConfigError, match="not on the served base"):
        adapter_runs([f"fr={lora_runs['fr']}"], str(other_base), None, False, "fp32", "torch", False)
    with pytest.raises(ConfigError, match="drop --weights"):
        adapter_runs([f"fr={lora_runs['fr']}"], str(tiny_chat_llama), None, False, "int8", "torch", False)
    assert main(["train", str(tiny_config), "train.epochs=1"]) == 0
    with pytest.raises(ConfigError, match="is a text-classification run"):
        adapter_runs([f"cls={tmp_path / 'run'}"], str(tiny_chat_llama), None, False, "fp32", "torch", False)


def test_serve_cli_refuses_an_adapter_of_another_base(tiny_chat_llama, lora_runs, tmp_path, capsys):
    other_base = tmp_path / "other-llama"
    shutil.copytree(tiny_chat_llama, other_base)
    code = main(["serve", str(other_base), "--adapter", f"fr={lora_runs['fr']}", "--port", "8937"])
    err = capsys.readouterr().err
    assert code == 2 and "not on the served base" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_mixed_batches_fall_back_to_one_adapter_per_wave_for_beam(tiny_chat_llama, lora_runs):
    served = served_model(str(tiny_chat_llama))
    attach_adapters(served, adapter_runs([f"fr={lora_runs['fr']}"], str(tiny_chat_llama), None, False, "fp32", "torch",
                                         False))
    with TestClient(create_app(served, ServeOptions())) as client:
        beam = {"prompt": "red dog", "max_tokens": 5, "lmforge": {"strategy": "beam", "num_beams": 2}}
        with_adapter = client.post("/v1/completions", json={"model": "fr"} | beam).json()["choices"][0]["text"]
        base = client.post("/v1/completions", json={"model": served.name} | beam).json()["choices"][0]["text"]
    alone_run = served_model(str(lora_runs["fr"]))
    with TestClient(create_app(alone_run, ServeOptions())) as client:
        expected = client.post("/v1/completions", json={"model": alone_run.name} | beam).json()["choices"][0]["text"]
    assert with_adapter == expected
    assert torch.is_tensor(next(served.model.parameters())) and isinstance(base, str)


def test_a_run_is_served_with_the_adapters_added_to_it(lora_runs, tmp_path, capsys):
    """`lmforge adapters add RUN OTHER --name echo`, then serving RUN: its own adapter under its name, `echo` too."""
    run = tmp_path / "fr-run"
    shutil.copytree(lora_runs["fr"], run)
    assert main(["adapters", "add", str(run), str(lora_runs["echo"]), "--name", "echo"]) == 0
    from lmforge.runs.adapters import side_adapters

    served = served_model(str(run), name="fr")
    attach_adapters(served, side_adapters(run), own=served.model.active_adapter)
    tokenizer = served.tokenizer
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    with TestClient(create_app(served, ServeOptions())) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["fr", "echo"]
        answers = {name: [client.post("/v1/completions", json={"model": name, "prompt": p, "max_tokens": 6,
                                                                "temperature": 0}).json()["choices"][0]["text"]
                          for p in PROMPTS] for name in ("fr", "echo")}
    for name in ("fr", "echo"):
        alone_served = served_model(str(lora_runs[name]))
        with TestClient(create_app(alone_served, ServeOptions())) as client:
            expected = [client.post("/v1/completions", json={"model": alone_served.name, "prompt": p, "max_tokens": 6,
                                                              "temperature": 0}).json()["choices"][0]["text"]
                        for p in PROMPTS]
        assert answers[name] == expected, name
    assert len(prompts) == len(PROMPTS)


def test_stacked_lora_gives_peft_mixed_batch_logits(tiny_chat_llama, lora_runs):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.decode.engine import BASE_ROWS
    from lmforge.models.mixed_lora import stacked_lora

    served = served_model(str(tiny_chat_llama), engine="torch")
    attach_adapters(served, adapter_runs([f"{n}={r}" for n, r in lora_runs.items()], str(tiny_chat_llama), None, False,
                                         "fp32", "torch", False))
    names = [BASE_ROWS, "fr", "echo", "upper", "fr"]
    ids = torch.tensor([served.tokenizer("red dog blue cat")["input_ids"]] * len(names))
    with torch.no_grad():
        peft_mixed = served.model(input_ids=ids, adapter_names=names).logits  # before any stacking
    stack = stacked_lora(served.model)
    assert stack is not None and stack.rank == 3 * 4 and len(stack.layers) > 0  # r 4 each, side by side
    with torch.no_grad():
        with stack.rows(names):
            stacked = served.model(input_ids=ids).logits
        plain = served.model(input_ids=ids).logits  # the patch is gone after the block
        peft_after = served.model(input_ids=ids, adapter_names=names).logits
    torch.testing.assert_close(stacked, peft_mixed, atol=1e-5, rtol=1e-5)
    layer = stack.layers[0]  # peft's own factors are views of the stack (one copy of the adapters' weights)
    assert layer.module.lora_A["echo"].weight.data_ptr() == layer.a[stack.columns["echo"]].data_ptr()
    assert torch.equal(peft_after, peft_mixed)
    assert not torch.allclose(stacked[1], stacked[2])  # rows of two adapters differ
    assert torch.equal(plain, served.model(input_ids=ids).logits)
    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_chat_llama), LoraConfig(r=4, use_dora=True))
    assert stacked_lora(dora) is None  # not vanilla LoRA: peft's own mixed batches
