"""Guidance: scorers that steer contrastive search towards something outside the text.

`ImageGuidance` is MAGIC's visual term (Su et al. 2022, arXiv:2205.02655): at every step each row's k
candidate tokens are appended to the text generated so far, the image-text scorer rates the k texts
against the row's image, and the softmax over the k ratings is added to the candidate score with
weight β (`decode.image_weight`):

    (1 − α) · p_LM(v)  −  α · degeneration penalty(v)  +  β · softmax_k(score(image, text + v))
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from lmforge.decode.strategies.contrastive import Scorer
from lmforge.vision.scorer import ImageTextScorer


class ImageGuidance:
    """The visual scorer for one batch: row i is steered towards `image_embeddings[i]`, unless `present[i]` is
    False (no image, or the gate said it is irrelevant): that row's candidates all get 0."""

    def __init__(self, scorer: ImageTextScorer, image_embeddings: torch.Tensor, present: torch.Tensor,
                 tokenizer: PreTrainedTokenizerBase) -> None:
        self.scorer, self.image_embeddings, self.present, self.tokenizer = scorer, image_embeddings, present, tokenizer

    def __call__(self, generated: torch.Tensor, candidates: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.cpu()
        guided = self.present[rows]  # (rows,)
        scores = torch.zeros(candidates.shape, dtype=torch.float32)
        if bool(guided.any()):
            kept = guided.nonzero().squeeze(1)
            texts = [[self.tokenizer.decode([*generated[r].tolist(), token], skip_special_tokens=True)
                      for token in candidates[r].tolist()] for r in kept.tolist()]
            ratings = self.scorer.score(self.image_embeddings[rows[kept]], texts)  # (guided rows, k)
            scores[kept] = ratings.float().cpu().softmax(dim=-1)
        return scores.to(candidates.device)


def image_guidance(scorer: ImageTextScorer, images: list[Image.Image | None], tokenizer: PreTrainedTokenizerBase,
                   weight: float) -> list[tuple[float, Scorer]]:
    """The weighted visual scorer for a batch whose row i shows `images[i]` (None: not guided)."""
    present = torch.tensor([image is not None for image in images])
    if not bool(present.any()):
        return []
    embedded = scorer.embed_images([image for image in images if image is not None])
    embeddings = embedded.new_zeros(len(images), *embedded.shape[1:])
    embeddings[present] = embedded
    return [(weight, ImageGuidance(scorer, embeddings, present, tokenizer))]
