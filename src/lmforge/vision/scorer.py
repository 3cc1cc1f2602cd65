"""Image-text matching scorers: how well each text describes an image. Guidance and the gate both use them.

A scorer embeds images once (`embed_images`) and then rates texts against them (`score`), so a decoder
can rate k candidate continuations per step without re-reading the image.

- `ClassNameScorer` (the default, all packaged): the image's top ImageNet classes from EfficientNet-Lite0,
  weighted by probability, matched against the text by MiniLM similarity to the class names, minus
  the text's mean similarity to every class name (so generic text does not score high everywhere).
- `ClipScorer`: any HF CLIP / SigLIP directory: scaled cosine of the two towers' embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from lmforge.errors import ModelError
from lmforge.models.sentence import SentenceEncoder
from lmforge.vision.networks import EfficientNetNetwork, load_efficientnet_lite0

DEFAULT_SCORER = "efficientnet-minilm"


class ImageTextScorer(Protocol):
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """(len(images), d): whatever `score` needs of each image."""
        ...

    def score(self, image_embeddings: torch.Tensor, texts: Sequence[Sequence[str]]) -> torch.Tensor:
        """(images, m): row i rates texts[i] (m texts) against image i; higher = better match."""
        ...


class ClassNameScorer:
    """Image → ImageNet class distribution; text → similarity to the class names (see module doc), times
    `scale` so that a softmax over candidate texts is as peaked as CLIP's (logit scale 100)."""

    def __init__(self, network: EfficientNetNetwork, text_encoder: SentenceEncoder, top_classes: int = 5,
                 scale: float = 100.0) -> None:
        self.network, self.text_encoder, self.top_classes, self.scale = network, text_encoder, top_classes, scale
        names = [", ".join(name.split(", ")[:3]) for name in network.class_names]
        self.class_embeddings = text_encoder.encode(names)  # (classes, hidden)

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        probabilities = self.network.class_probabilities(images)  # (n, classes)
        top = probabilities.topk(self.top_classes, dim=-1)
        weights = torch.zeros_like(probabilities).scatter(-1, top.indices, top.values)
        return weights / weights.sum(-1, keepdim=True)

    def score(self, image_embeddings: torch.Tensor, texts: Sequence[Sequence[str]]) -> torch.Tensor:
        m = len(texts[0]) if texts else 0
        flat = [text for row in texts for text in row]
        similarity = self.text_encoder.encode(flat) @ self.class_embeddings.T  # (n*m, classes)
        similarity = similarity.view(len(texts), m, -1)
        matched = torch.einsum("nmc,nc->nm", similarity, image_embeddings.to(similarity.dtype))
        return self.scale * (matched - similarity.mean(-1))  # a logit scale like CLIP's


class ClipScorer:
    """An HF CLIP / SigLIP checkpoint: logit_scale · cos(image, text)."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoModel, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load an image-text model from {path}: {str(error).splitlines()[0]}") from None
        if not hasattr(self.model, "get_text_features"):
            raise ModelError(f"{path} is not an image-text model (CLIP or SigLIP): it has no text tower")

    @staticmethod
    def _unit(output: torch.Tensor) -> torch.Tensor:
        output = output if isinstance(output, torch.Tensor) else output.pooler_output
        return torch.nn.functional.normalize(output, dim=-1)

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return self._unit(self.model.get_image_features(pixel_values=pixels))

    @torch.no_grad()
    def score(self, image_embeddings: torch.Tensor, texts: Sequence[Sequence[str]]) -> torch.Tensor:
        m = len(texts[0]) if texts else 0
        batch = self.processor(text=[t for row in texts for t in row], return_tensors="pt", padding=True,
                               truncation=True)
        text = self._unit(self.model.get_text_features(input_ids=batch["input_ids"],
                                                       attention_mask=batch.get("attention_mask")))
        text = text.view(len(texts), m, -1)
        return self.model.logit_scale.exp() * torch.einsum("nmd,nd->nm", text, image_embeddings)


def load_scorer(reference: str = DEFAULT_SCORER, text_encoder: str = "minilm-l6") -> ImageTextScorer:
    """`efficientnet-minilm` (packaged) or the directory of an HF CLIP / SigLIP checkpoint."""
    if reference == DEFAULT_SCORER:
        return ClassNameScorer(load_efficientnet_lite0(), SentenceEncoder(text_encoder))
    path = Path(reference).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"image-text scorer {reference!r} is neither {DEFAULT_SCORER!r} nor a directory with a "
                         f"config.json (an HF CLIP or SigLIP checkpoint)")
    return ClipScorer(path)
