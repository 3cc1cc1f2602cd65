"""The visual-relevance gate: does this image carry information the text's task needs?

A logistic classifier over the image-text scorer's rating of the pair, fitted on relevant pairs and
irrelevant ones (given, or made by pairing each text with another image). At inference the image is
used (guidance, fusion) only when the gate's probability reaches `threshold`; the decision and the
probability go into the output.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from lmforge.errors import DataError
from lmforge.files import atomic_write_text
from lmforge.vision.data import ImageText
from lmforge.vision.images import load_image
from lmforge.vision.scorer import ImageTextScorer


@dataclass
class RelevanceGate:
    weight: float
    bias: float
    threshold: float = 0.5
    scorer: str = "efficientnet-minilm"  # the scorer whose ratings it was fitted on

    def probability(self, ratings: torch.Tensor) -> torch.Tensor:
        """P(relevant) for image-text ratings of any shape."""
        return torch.sigmoid(self.weight * ratings.float() + self.bias)

    def decide(self, ratings: torch.Tensor) -> list[tuple[bool, float]]:
        """(use the image?, probability) per rating."""
        return [(p >= self.threshold, p) for p in self.probability(ratings).flatten().tolist()]

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RelevanceGate:
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise DataError(f"{path}: gate file not found; fit one with `lmforge gate DATA --output {path}`") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise DataError(f"{path}: not a gate file written by `lmforge gate` ({error})") from None


def with_shuffled_negatives(rows: Sequence[ImageText], seed: int = 0) -> list[ImageText]:
    """`rows` plus, for every relevant pair, its text with an image of another pair (labelled irrelevant)."""
    images = sorted({row.image for row in rows})
    if len(images) < 2:
        raise DataError("irrelevant pairs are made from other images: give at least two images")
    rng = random.Random(seed)
    negatives = [ImageText(rng.choice([i for i in images if i != row.image]), row.text, False) for row in rows if row.relevant]
    return [*rows, *negatives]


def rate_images(scorer: ImageTextScorer, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
    """The scorer's rating of image i with text i, (len(images),); the images are embedded in one call."""
    embeddings = scorer.embed_images(list(images))
    return torch.cat([scorer.score(embeddings[[n]], [[text]])[0] for n, text in enumerate(texts)])


def rate_pairs(scorer: ImageTextScorer, rows: Sequence[ImageText]) -> torch.Tensor:
    """The scorer's rating of each (image file, text) pair, (len(rows),); each file is read once."""
    paths = sorted({row.image for row in rows})
    loaded = dict(zip(paths, (load_image(path) for path in paths), strict=True))
    return rate_images(scorer, [loaded[row.image] for row in rows], [row.text for row in rows])


def fit_gate(ratings: torch.Tensor, labels: Sequence[bool], threshold: float = 0.5,
             scorer: str = "efficientnet-minilm") -> RelevanceGate:
    """A gate fitted (logistic regression) on ratings of pairs labelled relevant or not."""
    from sklearn.linear_model import LogisticRegression  # only fitting needs it; decoding imports this module

    if len(set(labels)) < 2:
        raise DataError("fitting the gate needs both relevant and irrelevant pairs")
    model = LogisticRegression().fit(ratings.float().view(-1, 1).numpy(), list(labels))
    return RelevanceGate(float(model.coef_[0, 0]), float(model.intercept_[0]), threshold, scorer)


def gate_images(gate_path: str, scorer: ImageTextScorer, images: Sequence[Image.Image | None],
                texts: Sequence[str]) -> tuple[list[Image.Image | None], list[tuple[bool, float] | None]]:
    """Each image, or None where the gate at `gate_path` finds it irrelevant to its text; and the decision
    (use, probability) per pair (None where there was no image to judge)."""
    gate = RelevanceGate.load(gate_path)
    present = [i for i, image in enumerate(images) if image is not None]
    decided = gate.decide(rate_images(scorer, [images[i] for i in present], [texts[i] for i in present])) if present else []
    decisions: list[tuple[bool, float] | None] = [None] * len(images)
    for i, decision in zip(present, decided, strict=True):
        decisions[i] = decision
    kept = [image if decision is not None and decision[0] else None for image, decision in zip(images, decisions, strict=True)]
    return kept, decisions
