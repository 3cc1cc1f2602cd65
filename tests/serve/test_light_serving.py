"""A server on llama.cpp alone: no torch imported until a request needs it, the torch server's greedy tokens,
room grown while idle, and the models that need torch from the start named."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from lmforge.serve.app import create_app
from lmforge.serve.served import ServeOptions

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.usefixtures("llama_cpp_cache")

GREEDY = {"model": "tiny", "prompt": "Why is the sky blue?", "max_tokens": 8, "lmforge": {"min_new_tokens": 8}}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 8,
        "lmforge": {"min_new_tokens": 8}, "logprobs": True, "top_logprobs": 2}
CONTRASTIVE = GREEDY | {"lmforge": {"strategy": "contrastive", "min_new_tokens": 8}}
SAMPLED = GREEDY | {"n": 3, "temperature": 0.9, "seed": 4}
JSON_REPLY = CHAT | {"logprobs": False, "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}, "max_tokens": 12,
    "lmforge": {}}

SERVE_ALONE = """
import json, sys
from fastapi.testclient import TestClient
from lmforge.serve.app import create_app
from lmforge.recipes.serve import light_served
from lmforge.serve.served import ServeOptions

served = light_served(sys.argv[1], "tiny", "fp32", None, False, "auto")
bodies = json.loads(sys.argv[2])
found = {}
with TestClient(create_app(served, ServeOptions(max_batch=2))) as client:
    found["models"] = client.get("/v1/models").json()
    for name in ("greedy", "chat", "sampled", "json"):
        found[name] = client.post("/v1/chat/completions" if "messages" in bodies[name] else "/v1/completions",
                                  json=bodies[name]).json()
    with client.stream("POST", "/v1/completions", json=bodies["greedy"] | {"stream": True}) as events:
        found["streamed"] = [line for line in events.iter_lines() if line.startswith("data: {")]
    found["torch_before"] = "torch" in sys.modules
    found["contrastive"] = client.post("/v1/completions", json=bodies["contrastive"]).json()
    found["torch_after"] = "torch" in sys.modules
print(json.dumps(found))
"""


def _text(answer: dict) -> str:
    choice = answer["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def test_a_server_on_llama_cpp_alone_imports_torch_only_for_what_its_batch_cannot_decode(tiny_smol):
    from lmforge.recipes.served_model import served_model

    model, _ = tiny_smol
    bodies = {"greedy": GREEDY, "chat": CHAT, "sampled": SAMPLED, "json": JSON_REPLY, "contrastive": CONTRASTIVE}
    done = subprocess.run([sys.executable, "-c", SERVE_ALONE, model.name_or_path, json.dumps(bodies)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    alone = json.loads(done.stdout.splitlines()[-1])
    assert "torch not loaded" in done.stderr
    assert alone["torch_before"] is False and alone["torch_after"] is True  # the contrastive request loaded it
    assert alone["models"]["data"][0]["engine"] == "auto"
    with TestClient(create_app(served_model(model.name_or_path, "tiny", engine="torch"),
                               ServeOptions(max_batch=2))) as client:
        on_torch = {name: client.post("/v1/chat/completions" if "messages" in body else "/v1/completions",
                                      json=body).json() for name, body in bodies.items() if name != "sampled"}
    for name in ("greedy", "chat", "contrastive"):
        assert _text(alone[name]) == _text(on_torch[name]), name
    assert alone["greedy"]["usage"] == on_torch["greedy"]["usage"]
    light_steps, torch_steps = (answer["choices"][0]["logprobs"]["content"] for answer in (alone["chat"], on_torch["chat"]))
    assert len(light_steps) == len(torch_steps) == 8
    for light, heavy in zip(light_steps, torch_steps, strict=True):
        assert abs(light["logprob"] - heavy["logprob"]) < 1e-3
        assert [t["token"] for t in light["top_logprobs"]] == [t["token"] for t in heavy["top_logprobs"]]
    streamed = "".join(json.loads(line[6:])["choices"][0]["text"] for line in alone["streamed"])
    assert streamed == _text(alone["greedy"]) and len(alone["streamed"]) > 2
    assert json.loads(_text(alone["json"]))["ok"] in (True, False)  # constrained to the schema
    # three rows on a context made for two: it grew while the batch was idle
    assert len(alone["sampled"]["choices"]) == 3 and alone["sampled"]["usage"]["completion_tokens"] == 24


def test_a_wave_waits_for_the_batch_to_drain_where_llama_cpp_has_no_room_for_it(tiny_smol):
    from lmforge.decode.batch_request import Request
    from lmforge.decode.light_batch import LightBatch
    from lmforge.decode.params import DecodeParams
    from lmforge.serve.light_model import light_served_model

    model, _ = tiny_smol
    served = light_served_model(model.name_or_path, "tiny", "fp32", None, False, "auto")
    batch = LightBatch(served.runtime, served.tokenizer, served.stop_ids, rows=2, cells=1024)
    beams = Request([[1, 2, 3]], DecodeParams(strategy="beam", num_beams=4, engine="llama.cpp"), 4, [])
    on_torch = Request([[1, 2, 3]], DecodeParams(strategy="contrastive", engine="torch"), 4, [])
    assert not batch.room_for_wave(beams) and batch.room_for_wave(on_torch)


def test_models_that_need_torch_from_the_start_are_named(tiny_smol, tiny_t5, tmp_path):
    import shutil

    from lmforge.serve.light_model import needs_torch

    model, _ = tiny_smol
    folder = tmp_path / "smol"
    shutil.copytree(model.name_or_path, folder)
    assert needs_torch(folder, None, "auto") is None
    assert needs_torch(folder, None, "torch") == "--engine torch"
    assert needs_torch(folder, "cuda", "auto") == "it decodes on a GPU"
    assert needs_torch(tiny_t5, None, "auto") == "llama.cpp serves decoder-only language models"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"tokenizer_class": "LlamaTokenizer"}))
    assert needs_torch(folder, None, "auto") == "its tokenizer needs transformers' model code"


def test_requests_join_the_light_batch_in_its_steps_and_decode_as_alone(tiny_smol, monkeypatch):
    from lmforge.decode.batch_request import Request
    from lmforge.decode.generate import generate
    from lmforge.decode.light_batch import LightBatch
    from lmforge.decode.llama_cpp_runtime import LlamaCppModel
    from lmforge.decode.params import DecodeParams
    from lmforge.decode.request import DecodeRequest
    from lmforge.serve.light_model import light_served_model

    model, tokenizer = tiny_smol
    served = light_served_model(model.name_or_path, "tiny", "fp32", None, False, "auto")
    calls: list[int] = []
    decode = LlamaCppModel.decode
    monkeypatch.setattr(LlamaCppModel, "decode", lambda self, entries, *shape: calls.append(len(entries))
                        or decode(self, entries, *shape))
    batch = LightBatch(served.runtime, served.tokenizer, served.stop_ids, rows=4, cells=1024)
    greedy = DecodeParams(min_new_tokens=20)
    prompts = ["Why is the sky blue?", "Name three colours of the rainbow, please.", "Hi"]
    long = Request([tokenizer(prompts[0])["input_ids"]], greedy, 20, [])
    short = Request([tokenizer(prompts[2])["input_ids"]], greedy.model_copy(update={"min_new_tokens": 3}), 3, [])
    late = Request([tokenizer(prompts[1])["input_ids"]], greedy.model_copy(update={"min_new_tokens": 6}), 6, [])
    batch.add(short, long)  # short on sequence 0: when it stops, long's row moves down to it
    for step in range(21):
        if step == 4:
            batch.add(late)  # joins while `long` runs: its prompt is read in the running rows' llama.cpp call
        batch.step()
        live = sorted(s for member in batch.members for s in member.sequences)
        assert live == list(range(len(live)))  # rows that stopped left no gap: one pass over the weights a step
    assert batch.rows == 0 and all(r.future.done() for r in (long, short, late))
    # one llama.cpp call a step: the first prompts, then 19 of the long row's 20 tokens (the last is chosen, not
    # read); the late prompt was read in the long row's call of step 4, with no call of its own
    assert len(calls) == 20 and calls[3] == 1 and calls[4] > 2
    for request in (long, short, late):
        alone = generate(model, tokenizer, DecodeRequest(request.prompts,
                                                         request.params.model_copy(update={"engine": "torch"}),
                                                         request.max_new_tokens))
        assert request.future.result()[0][0].tokens == alone[0][0].tokens
    assert not served.runtime.busy  # every row's sequence went back to the pool


def test_a_request_longer_than_a_stream_waits_for_the_idle_batch_which_makes_longer_ones(tiny_smol):
    from lmforge.decode.batch_request import Request
    from lmforge.decode.generate import generate
    from lmforge.decode.light_batch import LightBatch
    from lmforge.decode.params import DecodeParams
    from lmforge.decode.request import DecodeRequest
    from lmforge.serve.light_model import light_served_model

    model, tokenizer = tiny_smol
    served = light_served_model(model.name_or_path, "tiny", "fp32", None, False, "auto")
    runtime = served.runtime
    batch = LightBatch(runtime, served.tokenizer, served.stop_ids, rows=4, cells=1024)
    assert (runtime.sequence_ids, runtime.row_cells) == (5, 256)  # four rows and the prefix cache, a stream each
    prompt = tokenizer("Why is the sky blue?")["input_ids"]
    short = Request([prompt], DecodeParams(min_new_tokens=8), 8, [])
    long = Request([prompt], DecodeParams(min_new_tokens=300), 300, [])
    batch.add(short)
    batch.step()
    assert not batch.fits(long)  # 300 tokens do not fit a stream of 256 cells: it waits for the batch to drain
    while batch.rows:
        batch.step()
    batch.add(long)  # idle: streams long enough for it
    assert runtime.row_cells >= len(prompt) + 300
    while batch.rows:
        batch.step()
    # the llama.cpp engine's tokens (300 greedy tokens of a random model drift from torch's in the last bits)
    alone = generate(model, tokenizer, DecodeRequest([prompt], long.params.model_copy(update={"engine": "llama.cpp"}),
                                                     300))
    assert long.future.result()[0][0].tokens == alone[0][0].tokens
    again = Request([prompt], DecodeParams(min_new_tokens=8), 8, [])
    batch.add(again)  # idle again: back to the batch's own layout
    assert (runtime.sequence_ids, runtime.row_cells) == (5, 256)
    while batch.rows:
        batch.step()
    assert again.future.result()[0][0].tokens == short.future.result()[0][0].tokens
