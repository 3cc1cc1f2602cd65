"""decode.engine llama.cpp: the strategies run unchanged with llama.cpp doing the forward passes, and give the
torch engine's tokens in fp32. Needs llama-cpp-python and llama.cpp's converter (both optional: skipped without)."""

from __future__ import annotations

import sys

import pytest
from transformers import LlamaForCausalLM

from lmforge.cli import main
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.errors import ConfigError

pytest.importorskip("llama_cpp")


pytestmark = pytest.mark.usefixtures("llama_cpp_cache")


PROMPTS = ["Why is the sky blue?", "Name three colours of the rainbow, please.", "Hi"]


@pytest.mark.parametrize("knobs", [
    {"strategy": "greedy"},
    {"strategy": "beam", "num_beams": 4, "num_return_sequences": 2},
    {"strategy": "sample", "seed": 3, "top_k": 20, "num_return_sequences": 2},
    {"strategy": "prompt_lookup"},
    {"strategy": "greedy", "no_repeat_ngram_size": 2, "repetition_penalty": 1.3},
], ids=lambda knobs: "-".join(str(v) for v in knobs.values()))
def test_llama_cpp_steps_give_the_torch_engines_tokens(tiny_smol, knobs):
    model, tokenizer = tiny_smol
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]  # mixed lengths, one batch
    params = DecodeParams(**knobs, min_new_tokens=12)
    torch_out = generate(model, tokenizer, DecodeRequest(prompts, params, 12))
    llama_out = generate(model, tokenizer, DecodeRequest(prompts, params.model_copy(update={"engine": "llama.cpp"}), 12))
    for theirs, ours in zip(torch_out, llama_out, strict=True):
        assert [c.tokens for c in ours] == [c.tokens for c in theirs]
        assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(ours, theirs, strict=True))


def test_int8_weights_run_on_a_q8_0_gguf(tiny_smol):
    model, tokenizer = tiny_smol
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    out = generate(model, tokenizer, DecodeRequest(prompts,
                                                   DecodeParams(engine="llama.cpp", weights="int8", min_new_tokens=8),
                                                   8))
    assert [len(c[0].tokens) for c in out] == [8, 8, 8]


def test_strategies_that_need_torch_are_refused_in_one_line():
    with pytest.raises(ValueError, match="engine llama.cpp runs strategies greedy, sample, beam, prompt_lookup"):
        DecodeParams(engine="llama.cpp", strategy="contrastive")


def test_a_peft_model_and_a_missing_package_are_one_line(tiny_smol, monkeypatch):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_smol
    wrapped = get_peft_model(LlamaForCausalLM(model.config), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="adapters merged first"):
        generate(wrapped, tokenizer, DecodeRequest([[1, 2, 3]], DecodeParams(engine="llama.cpp"), 4))
    import lmforge.decode.llama_cpp_runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_RUNTIMES", {})
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError, match=r"pip install 'lmforge\[llama-cpp\]'"):
        generate(model, tokenizer, DecodeRequest([[1, 2, 3]], DecodeParams(engine="llama.cpp"), 4))


def test_generate_takes_the_engine_flag(tiny_smol, tmp_path):
    import json

    model, _ = tiny_smol
    rows = []
    for engine in ("torch", "llama.cpp", "auto"):
        out = tmp_path / f"{engine}.jsonl"
        assert main(["generate", model.name_or_path, "--prompt", "Why is the sky blue?", "--max-new-tokens", "6",
                     "--min-new-tokens", "6", "--engine", engine, "--no-chat-template", "--output", str(out)]) == 0
        rows.append(json.loads(out.read_text()))
    assert rows[0]["generated"] == rows[1]["generated"] == rows[2]["generated"]
    assert abs(rows[0]["score"] - rows[1]["score"]) < 1e-3
    for engine in ("torch", "auto"):  # a strategy llama.cpp does not run: auto decodes it on torch
        out = tmp_path / f"contrastive-{engine}.jsonl"
        assert main(["generate", model.name_or_path, "--prompt", "Why is the sky blue?", "--max-new-tokens", "6",
                     "--strategy", "contrastive", "--engine", engine, "--no-chat-template", "--output", str(out)]) == 0
    assert (tmp_path / "contrastive-torch.jsonl").read_text() == (tmp_path / "contrastive-auto.jsonl").read_text()


def test_engine_auto_picks_llama_cpp_for_a_model_loaded_to_decode_with_torchs_tokens(tiny_smol, capsys, monkeypatch):
    import lmforge.decode.engine_choice as choice
    from lmforge.decode.engine_choice import choose_engine, mark_as_saved

    monkeypatch.setattr(choice, "_SAID", set())

    model, tokenizer = tiny_smol
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    params = DecodeParams(min_new_tokens=12)
    assert params.engine == "auto"
    assert choose_engine(params, model) == "torch"  # not marked: its weights may be a training's, not the folder's
    loaded = mark_as_saved(LlamaForCausalLM.from_pretrained(model.name_or_path).eval())
    assert choose_engine(params, loaded) == "llama.cpp"
    for torch_only in ({"strategy": "contrastive"}, {"cache": "static"}):
        assert choose_engine(DecodeParams(**torch_only), loaded) == "torch"
    auto = generate(loaded, tokenizer, DecodeRequest(prompts, params, 12))
    on_torch = generate(model, tokenizer, DecodeRequest(prompts, params.model_copy(update={"engine": "torch"}), 12))
    assert [c[0].tokens for c in auto] == [c[0].tokens for c in on_torch]
    said = capsys.readouterr().err
    assert said.count(f"engine auto decodes {model.name_or_path} on llama.cpp") == 1


def test_serve_engine_auto_lets_torch_weights_go_and_reads_them_back_for_torch_only_requests(tiny_smol):
    from fastapi.testclient import TestClient

    from lmforge.models.released_weights import weights_released
    from lmforge.recipes.served_model import served_model
    from lmforge.serve.app import create_app
    from lmforge.serve.served import ServeOptions

    model, _ = tiny_smol
    body = {"model": "tiny", "prompt": "Why is the sky blue?", "max_tokens": 6, "lmforge": {"min_new_tokens": 6}}
    contrastive = body | {"lmforge": {"strategy": "contrastive", "min_new_tokens": 6}}
    answers = {}
    for engine in ("torch", "auto"):
        served = served_model(model.name_or_path, "tiny", engine=engine)
        assert weights_released(served.model) == (engine == "auto") == (served.runtime is not None)
        with TestClient(create_app(served, ServeOptions(max_batch=4))) as client:
            assert client.get("/v1/models").json()["data"][0]["engine"] == engine
            greedy = client.post("/v1/completions", json=body)
            assert greedy.status_code == 200 and weights_released(served.model) == (engine == "auto")
            other = client.post("/v1/completions", json=contrastive)  # auto: the weights come back, torch decodes
            assert other.status_code == 200 and not weights_released(served.model)
            answers[engine] = [r.json()["choices"][0]["text"] for r in (greedy, other)]
    assert answers["torch"] == answers["auto"]


def test_prompts_sharing_a_prefix_read_only_the_rest_and_decode_the_same(tiny_smol, monkeypatch):
    from lmforge.decode.llama_cpp_runtime import LlamaCppModel

    model, tokenizer = tiny_smol
    system = tokenizer("You are a careful assistant. Answer in one short sentence, then stop.")["input_ids"]
    first, second, third = (system + tokenizer(text)["input_ids"] for text in ("Why is the sky blue?", "Hi", "Name it"))
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert shared >= len(system) - 1
    read: list[int] = []
    decode = LlamaCppModel.decode
    monkeypatch.setattr(LlamaCppModel, "decode",
                        lambda self, entries, *shape: read.append(len(entries)) or decode(self, entries, *shape))
    params = DecodeParams(engine="llama.cpp", min_new_tokens=8)
    cold = generate(model, tokenizer, DecodeRequest([second, third], params.model_copy(update={"prefix_cache": False}), 8))
    generate(model, tokenizer, DecodeRequest([first], params, 8))
    read.clear()
    warm = generate(model, tokenizer, DecodeRequest([second, third], params,
                                                    8))  # both rows start with the cached first prompt
    unshared = sum(len(p) - next(i for i, (a, b) in enumerate(zip(first, p, strict=False)) if a != b)
                   for p in (second, third))
    assert read[0] == unshared < len(second) + len(third)
    for before, after in zip(cold, warm, strict=True):
        assert before[0].tokens == after[0].tokens and abs(before[0].score - after[0].score) < 1e-4


def test_requests_join_a_running_llama_cpp_batch_and_decode_as_alone(tiny_smol):
    from lmforge.decode.continuous import ContinuousBatch, Request
    from lmforge.decode.llama_cpp_engine import llama_cpp_runtime

    model, tokenizer = tiny_smol
    runtime = llama_cpp_runtime(model, "fp32")
    runtime.reserve(cells=4 * 256, sequences=8)
    batch = ContinuousBatch(model, tokenizer, runtime)
    greedy = DecodeParams(engine="llama.cpp", min_new_tokens=20)
    long = Request([tokenizer(PROMPTS[0])["input_ids"]], greedy, 20, [])
    short = Request([tokenizer(PROMPTS[2])["input_ids"]], greedy.model_copy(update={"min_new_tokens": 3}), 3, [])
    late = Request([tokenizer(PROMPTS[1])["input_ids"]], greedy.model_copy(update={"min_new_tokens": 6}), 6, [])
    batch.add(long, short)
    for step in range(20):
        if step == 4:
            batch.add(late)  # joins while `long` runs: its positions differ from the batch's other rows
        batch.step()
    assert batch.rows == 0 and all(r.future.done() for r in (long, short, late))
    for request in (long, short, late):
        alone = generate(model, tokenizer, DecodeRequest(request.prompts,
                                                         request.params.model_copy(update={"engine": "torch"}),
                                                         request.max_new_tokens))
        assert request.future.result()[0][0].tokens == alone[0][0].tokens
    assert not runtime.busy  # every row's sequence went back to the pool


def test_serve_engine_llama_cpp_answers_from_llama_cpp_and_refuses_torch_only_strategies(tiny_smol):
    from fastapi.testclient import TestClient

    from lmforge.recipes.served_model import served_model
    from lmforge.serve.app import create_app
    from lmforge.serve.served import ServeOptions

    model, _ = tiny_smol
    answers = {}
    for engine in ("torch", "llama.cpp"):
        served = served_model(model.name_or_path, "tiny", engine=engine)
        with TestClient(create_app(served, ServeOptions(max_batch=4))) as client:
            body = {"model": "tiny", "prompt": "Why is the sky blue?", "max_tokens": 6, "lmforge": {"min_new_tokens": 6}}
            greedy = client.post("/v1/completions", json=body)
            beam = client.post("/v1/completions", json=body | {"lmforge": {"strategy": "beam", "num_beams": 2,
                                                                           "min_new_tokens": 6}})
            assert greedy.status_code == beam.status_code == 200, greedy.text + beam.text
            answers[engine] = (greedy.json()["choices"][0]["text"], beam.json()["choices"][0]["text"])
            if engine == "llama.cpp":
                assert served.runtime is not None and not served.runtime.busy
                refused = client.post("/v1/completions", json=body | {"lmforge": {"strategy": "contrastive"}})
                assert refused.status_code == 400 and "this server decodes with llama.cpp" in refused.json()["error"]["message"]
    assert answers["torch"] == answers["llama.cpp"]


def test_a_llama_cpp_server_keeps_one_cache_of_the_models_context_and_requests_wait_for_room(tiny_smol):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from lmforge.recipes.served_model import served_model
    from lmforge.serve.app import create_app
    from lmforge.serve.limits import RequestLimits
    from lmforge.serve.served import ServeOptions

    model, _ = tiny_smol
    served = served_model(model.name_or_path, "tiny", engine="llama.cpp")
    options = ServeOptions(max_batch=8, limits=RequestLimits(max_tokens=400))
    app = create_app(served, options)
    assert served.runtime.cells >= 1024 + 400  # the tiny model's context (512) is less than one request's room
    room = served.runtime.cells // 406  # requests at once: ~406 cells each (a 6-token prompt and 400 tokens)
    assert room < 8
    scheduler, widest = app.state.scheduler, []
    step = scheduler.batch.step
    scheduler.batch.step = lambda: widest.append(scheduler.batch.rows) or step()
    body = {"model": "tiny", "prompt": "Why is the sky blue?", "max_tokens": 400, "lmforge": {"min_new_tokens": 400}}
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/completions", json=body), range(8)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json()["choices"][0]["text"] for a in answers}) == 1  # greedy: the same answer, whoever waited
    assert 1 < max(widest) <= room  # the rest waited for room instead of failing
