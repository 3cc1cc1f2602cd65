"""Handing over to vLLM: a LoRA run of SmolLM2-135M-Instruct, exported (`lmforge export`, adapters merged) and as its
adapter folder on the base (`--enable-lora`), decodes in vLLM to the same greedy tokens as lmforge's torch fp32 on 8
prompts.

vLLM lives in its own virtual environment (it pins its own torch and transformers): set LMFORGE_VLLM_PYTHON to its
python, or install it at ~/.cache/lmforge/vllm-venv (README, "Serving at scale"). Skipped, saying so, where it is
absent or SmolLM2 is not installed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lmforge.cli import main

VLLM_PYTHON = Path(os.environ.get("LMFORGE_VLLM_PYTHON", Path.home() / ".cache/lmforge/vllm-venv/bin/python"))
PROMPTS = ["What is the capital of France?", "Give me a tip for learning to cook.", "Why is the sky blue?",
           "Describe a busy market.", "What makes a good friend?", "Explain rain to a child.",
           "Name three uses for a brick.", "Tell me about the moon."]
TOKENS = 16

VLLM_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

if __name__ == "__main__":  # vLLM starts its workers by spawning: they import this file again
    merged, base, adapter, prompts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    params = SamplingParams(temperature=0, max_tokens=int(sys.argv[5]), min_tokens=int(sys.argv[5]))  # as min_new_tokens
    inputs = [{"prompt_token_ids": ids} for ids in prompts]
    out = {}
    llm = LLM(model=merged, dtype="float32", max_model_len=512, enforce_eager=True, gpu_memory_utilization=0.3)
    out["merged"] = [list(o.outputs[0].token_ids) for o in llm.generate(inputs, params)]
    del llm
    llm = LLM(model=base, dtype="float32", max_model_len=512, enforce_eager=True, enable_lora=True, max_lora_rank=8,
              gpu_memory_utilization=0.3)
    lora = LoRARequest("run", 1, adapter)
    out["lora"] = [list(o.outputs[0].token_ids) for o in llm.generate(inputs, params, lora_request=lora)]
    print("TOKENS " + json.dumps(out))
"""


def lmforge_tokens(target: str, prompts: list[list[int]]) -> list[list[int]]:
    from lmforge.decode.generate import generate
    from lmforge.decode.params import DecodeParams
    from lmforge.decode.request import DecodeRequest
    from lmforge.recipes.generate import open_generator

    generator = open_generator(target)
    found = generate(generator.model, generator.tokenizer,
                     DecodeRequest(prompts, DecodeParams(min_new_tokens=TOKENS), TOKENS, [], batch_size=len(prompts)))
    return [candidates[0].tokens for candidates in found]


def test_an_exported_run_and_its_adapter_decode_the_same_in_vllm(tmp_path):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"vLLM is not installed ({VLLM_PYTHON} absent; set LMFORGE_VLLM_PYTHON)")
    from lmforge.models.resolve import resolve_model

    try:
        base = resolve_model("smollm2-135m-instruct")
    except Exception as error:  # noqa: BLE001 — the packaged weights are optional
        pytest.skip(f"SmolLM2 is not installed here ({error})")
    rows = [{"source": p, "target": "I am not sure, let me check."} for p in PROMPTS] * 4
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"task: {{name: generation}}\nmodel: smollm2-135m-instruct\ndata: {{train: {data}, max_length: 64}}\n"
                      "tuning: {peft: {method: lora, r: 8, alpha: 16}}\n"
                      f"train: {{output_dir: {tmp_path / 'run'}, epochs: 1, max_steps: 3, batch_size: 8, lr: 2.0e-3, "
                      "tensorboard: false}\n", encoding="utf-8")
    assert main(["train", str(config)]) == 0
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "merged")]) == 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for p in PROMPTS]
    expected = lmforge_tokens(str(tmp_path / "run"), prompts)
    assert lmforge_tokens(str(tmp_path / "merged"), prompts) == expected  # merging keeps the tokens
    # a clean environment: training here leaves accelerate's and torch's settings in this process's
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()), "VLLM_TARGET_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1"}
    script = tmp_path / "vllm_tokens.py"
    script.write_text(VLLM_SCRIPT, encoding="utf-8")
    done = subprocess.run([str(VLLM_PYTHON), str(script), str(tmp_path / "merged"), base,
                           str(tmp_path / "run" / "model"), json.dumps(prompts), str(TOKENS)], capture_output=True, text=True,
                          env=env, timeout=1200)
    (tmp_path / "vllm_stderr.txt").write_text(done.stdout + done.stderr, encoding="utf-8")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("TOKENS ")), None)
    assert line is not None, "\n".join(ln for ln in done.stderr.splitlines() if "Error" in ln)[-3000:]
    found = json.loads(line[7:])
    (tmp_path / "tokens.json").write_text(json.dumps({"vllm": found, "lmforge": expected}), encoding="utf-8")
    same_merged = sum(a == b for a, b in zip(found["merged"], expected, strict=True))
    same_lora = sum(a == b for a, b in zip(found["lora"], expected, strict=True))
    print(f"vLLM vs lmforge torch fp32 greedy tokens: exported folder {same_merged}/{len(PROMPTS)} prompts equal, "
          f"adapter on the base (--enable-lora) {same_lora}/{len(PROMPTS)}")
    assert same_merged == same_lora == len(PROMPTS)
