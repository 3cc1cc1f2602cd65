"""Exports checked in the engines they are for: `lmforge export` of the packaged SmolLM2 to GGUF (f32, q8_0),
decoded greedily by llama.cpp (llama-cpp-python) beside lmforge fp32, and to ONNX, run by onnxruntime beside torch.

The 8 chat prompts of bench/decode_speed.py, 32 new tokens each (prompt tokens from the HF tokenizer are fed to
llama.cpp, whose own tokenisation of the rendered prompts is compared too). Needs llama-cpp-python (built from its
sdist: see docs/benchmarks.md), llama.cpp's converter (`make llama-cpp-converter`) and the export extra.

    python bench/export_check.py --new-tokens 32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_speed import PROMPTS  # noqa: E402

from lmforge.decode.generate import generate  # noqa: E402
from lmforge.decode.params import DecodeParams  # noqa: E402
from lmforge.decode.request import DecodeRequest
from lmforge.models.packaged import locate_packaged  # noqa: E402

MODEL = "smollm2-135m-instruct"


def export(fmt: str, output: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge.cli", "export", MODEL, "--output", str(output), "--format", fmt,
                    *extra], check=True, capture_output=True)
    return time.perf_counter() - started


def llama_cpp_greedy(gguf: Path, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    rows = []
    for prompt in prompts:
        llm.reset()
        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            out.append(token)
            if len(out) == new_tokens or token == llm.token_eos():
                break
        rows.append(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    folder = str(locate_packaged(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                for p in PROMPTS]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
    ours = [until_eos(c[0].tokens, tokenizer.eos_token_id)[: args.new_tokens]
            for c in generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(), args.new_tokens,
                                                              batch_size=len(prompts)))]
    with tempfile.TemporaryDirectory(prefix="export-check-") as tmp:
        print("| export | seconds | check | result |")
        print("|---|---|---|---|")
        for outtype in ("f32", "q8_0"):
            seconds = export("gguf", Path(tmp) / outtype, "--outtype", outtype)
            gguf = Path(tmp) / outtype / f"model-{outtype}.gguf"
            theirs = llama_cpp_greedy(gguf, prompts, args.new_tokens)
            same = sum(a == b for a, b in zip(ours, theirs, strict=True))
            agree = np.mean([np.mean([x == y for x, y in zip(a, b, strict=False)]) for a, b in zip(ours, theirs, strict=True)])
            print(f"| GGUF {outtype} ({gguf.stat().st_size / 2**20:.0f} MB) | {seconds:.0f} | llama.cpp greedy = lmforge fp32 "
                  f"({len(prompts)} prompts × {args.new_tokens} tokens) | {same}/{len(prompts)} identical, "
                  f"{100 * agree:.0f}% of positions |")
            if outtype == "f32":
                from llama_cpp import Llama

                vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
                tokenised = sum(vocab.tokenize(text.encode(), add_bos=False, special=True) == ids
                                for text, ids in zip(rendered, prompts, strict=True))
                print(f"| GGUF f32 | – | llama.cpp's tokenizer = HF's on the rendered prompts | {tokenised}/{len(prompts)} |")
        seconds = export("onnx", Path(tmp) / "onnx")
        import onnxruntime as ort

        session = ort.InferenceSession(str(Path(tmp) / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        worst = 0.0
        for ids in prompts:
            batch = np.asarray([ids], dtype=np.int64)
            [logits] = session.run(["logits"], {"input_ids": batch, "attention_mask": np.ones_like(batch)})
            with torch.no_grad():
                expected = model(torch.tensor(batch)).logits.numpy()
            worst = max(worst, float(np.abs(logits - expected).max()))
        print(f"| ONNX | {seconds:.0f} | onnxruntime logits vs torch fp32, {len(prompts)} prompts | max |Δ| {worst:.1e} |")


def until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


if __name__ == "__main__":
    main()
