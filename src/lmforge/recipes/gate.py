"""`lmforge gate DATA --output gate.json`: fit the visual-relevance gate on image-text pairs and report its accuracy.

Irrelevant pairs are the rows marked `"relevant": false`, plus (unless --no-shuffled) each relevant
text paired with another image. Accuracy is reported on the fitted pairs and leave-one-image-out
(each image's pairs judged by a gate fitted without that image), the honest figure for new images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.errors import RunDirError
from lmforge.vision.data import read_image_text
from lmforge.vision.gate import fit_gate, rate_pairs, with_shuffled_negatives
from lmforge.vision.scorer import load_scorer


def leave_one_image_out_accuracy(ratings: torch.Tensor, labels: list[bool], images: list[Path], threshold: float) -> float:
    """Accuracy on each image's pairs of a gate fitted on the other images' pairs."""
    correct = 0
    for image in sorted(set(images)):
        held = torch.tensor([i == image for i in images])
        kept_labels = [label for label, h in zip(labels, held.tolist(), strict=True) if not h]
        held_labels = [label for label, h in zip(labels, held.tolist(), strict=True) if h]
        if len(set(kept_labels)) < 2:
            continue
        decisions = fit_gate(ratings[~held], kept_labels, threshold).decide(ratings[held])
        correct += sum(use == label for (use, _), label in zip(decisions, held_labels, strict=True))
    return correct / len(labels)


def fit_gate_file(data: str, output: str, scorer_reference: str, threshold: float, shuffled: bool, seed: int) -> dict:
    """Fit and save the gate; its accuracy on the pairs and leave-one-image-out."""
    if Path(output).exists():
        raise RunDirError(f"{output} exists; choose another --output or remove it")
    rows = read_image_text(data)
    rows = with_shuffled_negatives(rows, seed) if shuffled else rows
    ratings = rate_pairs(load_scorer(scorer_reference), rows)
    labels = [row.relevant for row in rows]
    gate = fit_gate(ratings, labels, threshold, scorer_reference)
    gate.save(output)
    fitted = sum(use == label for (use, _), label in zip(gate.decide(ratings), labels, strict=True)) / len(labels)
    held_out = leave_one_image_out_accuracy(ratings, labels, [row.image for row in rows], threshold)
    return {"pairs": len(rows), "relevant": sum(labels), "images": len({row.image for row in rows}),
            "accuracy": fitted, "leave_one_image_out_accuracy": held_out}
