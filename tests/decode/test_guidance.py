"""Image guidance (MAGIC-style): β = 0 is plain contrastive search, a scorer steers each row to its own image."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.errors import ConfigError

RED, BLUE = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")


class WordScorer:
    """A fake image-text scorer: a red image wants 'chien' in the text, a blue one 'chat'."""

    def embed_images(self, images):
        return torch.tensor([[1.0, 0.0] if image.getpixel((0, 0))[0] > 128 else [0.0, 1.0] for image in images])

    def score(self, image_embeddings, texts):
        wanted = ["chien" if row[0] > 0 else "chat" for row in image_embeddings.tolist()]
        return torch.tensor([[50.0 * (word in text) for text in row] for word, row in zip(wanted, texts, strict=True)])


@pytest.fixture(scope="module")
def llama(tiny_chat_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval(), AutoTokenizer.from_pretrained(tiny_chat_llama)


def prompts(tokenizer, count=2):
    return [tokenizer("red dog", add_special_tokens=False)["input_ids"]] * count


def test_zero_weight_and_uniform_scores_leave_contrastive_search_unchanged(llama):
    model, tokenizer = llama
    plain = DecodeParams(strategy="contrastive", top_k=8)
    expected = generate(model, tokenizer, DecodeRequest(prompts(tokenizer), plain, 8))

    class Uniform(WordScorer):
        def score(self, image_embeddings, texts):
            return torch.zeros(len(texts), len(texts[0]))
    guided = DecodeParams(strategy="contrastive", top_k=8, image_weight=2.0)
    same = generate(model, tokenizer, DecodeRequest(prompts(tokenizer), guided, 8,
                                                    inputs=PromptInputs(images=[RED, BLUE], image_scorer=Uniform())))
    assert [c[0].tokens for c in same] == [c[0].tokens for c in expected]


def test_each_row_is_steered_towards_its_own_image(llama):
    model, tokenizer = llama
    params = DecodeParams(strategy="contrastive", top_k=len(tokenizer), penalty_alpha=0.0, image_weight=5.0)
    out = generate(model, tokenizer, DecodeRequest(prompts(tokenizer, 3), params, 4,
                                                   inputs=PromptInputs(images=[RED, BLUE, RED], image_scorer=WordScorer())))
    texts = [tokenizer.decode(c[0].tokens) for c in out]
    assert "chien" in texts[0] and "chien" in texts[2] and "chat" in texts[1] and "chien" not in texts[1]


def test_the_gate_lets_only_relevant_images_guide(llama, tmp_path):
    from lmforge.vision.gate import RelevanceGate

    model, tokenizer = llama
    RelevanceGate(weight=1.0, bias=-25.0).save(tmp_path / "gate.json")  # relevant iff the scorer rates the pair 50
    guided = DecodeParams(strategy="contrastive", top_k=len(tokenizer), penalty_alpha=0.0, image_weight=5.0)
    gated = guided.model_copy(update={"image_gate": str(tmp_path / "gate.json")})
    # the red image is relevant to a text holding 'chien' (what WordScorer wants for red), not to 'a dog'
    out = generate(model, tokenizer, DecodeRequest(prompts(tokenizer), gated, 4,
                                                   inputs=PromptInputs(images=[RED, RED], image_scorer=WordScorer(), prompt_texts=["a chien", "a dog"])))
    expected = generate(model, tokenizer, DecodeRequest(prompts(tokenizer), guided, 4,
                                                        inputs=PromptInputs(images=[RED, None], image_scorer=WordScorer())))
    assert [c[0].tokens for c in out] == [c[0].tokens for c in expected]
    assert [c[0].decision_fields()["image_relevant"] for c in out] == [True, False]
    assert out[0][0].image_relevance > 0.99 > 0.01 > out[1][0].image_relevance
    # without prompt_texts the gate reads the decoded prompts ('red dog': no 'chien', so not relevant)
    plain = generate(model, tokenizer, DecodeRequest(prompts(tokenizer), gated, 4,
                                                     inputs=PromptInputs(images=[RED, RED], image_scorer=WordScorer())))
    assert [c[0].image_relevant for c in plain] == [False, False]


def test_images_and_weight_come_together(llama):
    model, tokenizer = llama
    with pytest.raises(ConfigError, match="one image per prompt"):
        generate(model, tokenizer, DecodeRequest(prompts(tokenizer),
                                                 DecodeParams(strategy="contrastive", image_weight=1.0), 4,
                                                 inputs=PromptInputs(images=[RED], image_scorer=WordScorer())))
    with pytest.raises(ConfigError, match="image_weight is 0"):
        generate(model, tokenizer, DecodeRequest(prompts(tokenizer), DecodeParams(strategy="contrastive"), 4,
                                                 inputs=PromptInputs(images=[RED, BLUE])))
    with pytest.raises(ValueError, match="image_gate decides whether a prompt's image guides the text"):
        DecodeParams(strategy="contrastive", image_gate="gate.json")
    with pytest.raises(ValueError, match="image_weight does not apply to strategy 'greedy'"):
        DecodeParams(image_weight=1.0)


def test_cli_guides_with_an_image_and_reports_bad_images(tiny_chat_llama, tiny_clip, tmp_path, capsys):
    RED.save(tmp_path / "red.png")
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"source": "red dog", "image": "red.png"}) + "\n")
    common = ["generate", str(tiny_chat_llama), "--strategy", "contrastive", "--image-weight", "2",
              "--image-scorer", str(tiny_clip), "--max-new-tokens", "3"]
    assert main([*common, "--input", str(tmp_path / "prompts.jsonl"), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["prompt"] == "red dog"
    capsys.readouterr()
    assert main([*common, "--prompt", "red dog", "--image", str(tmp_path / "missing.png")]) == 2
    assert "missing.png: image not found" in capsys.readouterr().err
