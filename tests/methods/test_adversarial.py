"""Adversarial training (FGM, PGD) and the perturbed-copy robustness check."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lmforge.cli import main
from lmforge.evaluate.perturb import char_noise, embedding_neighbours, perturb
from lmforge.methods.adversarial import AdversarialParams, adversarial_backward


def loss_fn(model, tokenizer):
    batch = tokenizer(["the film was good", "a dull story"], return_tensors="pt", padding=True)
    labels = torch.tensor([1, 0])
    return lambda: torch.nn.functional.cross_entropy(model(**batch).logits, labels)


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_step_adds_gradients_and_restores_the_embeddings(tiny_bert, method):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    compute = loss_fn(model, tokenizer)
    embeddings = model.get_input_embeddings().weight
    before = embeddings.detach().clone()
    compute().backward()
    clean = model.classifier.weight.grad.clone()
    adversarial_backward(model, compute, AdversarialParams(method=method, epsilon=5.0))
    assert torch.equal(embeddings.detach(), before)
    added = model.classifier.weight.grad - clean
    assert added.abs().sum() > 0
    # what was added is the gradient of the loss at *perturbed* embeddings, not a second clean gradient
    assert not torch.allclose(added, clean, atol=1e-7)


def test_typos_and_neighbour_swaps_are_seeded(tiny_bert):
    rng = random.Random(1)
    noisy = [char_noise("terrible", rng) for _ in range(20)]
    assert any(w != "terrible" for w in noisy) and all(abs(len(w) - 8) <= 1 for w in noisy)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    neighbours = embedding_neighbours({"good", "bad", "film", "story", "plot"}, tokenizer,
                                      model.get_input_embeddings().weight.detach())
    assert neighbours and all(word != other for word, other in neighbours.items())
    text = "the film was good and the plot was great"
    first = perturb(text, random.Random(3), neighbours, char_rate=0.3, swap_rate=0.3)
    assert first == perturb(text, random.Random(3), neighbours, char_rate=0.3, swap_rate=0.3) != text


def test_fgm_run_and_perturbed_evaluation_through_the_cli(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "tuning.adversarial.method=fgm",
                 "train.epochs=1"]) == 0
    assert main(["evaluate", str(run), "--perturbed"]) == 0
    report = json.loads((run / "evaluations" / "validation" / "report.json").read_text())
    assert 0 <= report["perturbed"]["accuracy"] <= 1
    assert (run / "evaluations" / "validation" / "perturbed.jsonl").is_file()
    assert "validation perturbed: accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(tiny_config), "--perturbed"]) == 2
