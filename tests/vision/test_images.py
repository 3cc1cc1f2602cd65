"""Image files: clear errors for bad ones, and the preprocessing shapes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lmforge.errors import DataError
from lmforge.vision.images import ImageTransform, load_image


def test_load_image_returns_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (10, 7), 128).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (10, 7)


@pytest.mark.parametrize("name, content, message", [
    ("missing.png", None, "image not found"),
    ("notes.png", b"just some text, not pixels", "not an image Pillow can read"),
])
def test_bad_image_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_truncated_image_is_reported_as_corrupt(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.new("RGB", (64, 64), "red").save(whole)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.jpg: corrupt or truncated"):
        load_image(cut)


def test_transform_resizes_crops_and_normalises():
    transform = ImageTransform(size=32)
    pixels = transform([Image.new("RGB", (80, 40), (255, 0, 0)), Image.new("RGB", (30, 50), (0, 0, 0))])
    assert pixels.shape == (2, 3, 32, 32)
    assert torch.allclose(pixels[0, 0], torch.ones(32, 32)) and torch.allclose(pixels[0, 1], -torch.ones(32, 32))
    assert torch.allclose(pixels[1], -torch.ones(3, 32, 32))
