"""Reading images (Pillow) with errors that name the file, and turning them into normalised pixel tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from lmforge.errors import DataError


def load_image(path: str | Path) -> Image.Image:
    """The RGB image at `path`; a missing, corrupt or unsupported file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found; check the path (relative paths are read from the data file's folder)")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise DataError(f"{path}: too many pixels to decode safely ({error}); downscale the image") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read (supported: PNG, JPEG, GIF, BMP, TIFF, WebP…)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt or truncated image ({error}); re-export or remove it") from None


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side, centre-crop a square and normalise per channel (a vision model's own settings)."""

    size: int = 224
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """Images -> (batch, 3, size, size) float pixels."""
        resized = round(self.size / self.crop_fraction)
        batch = []
        for image in images:
            width, height = image.size
            scale = resized / min(width, height)
            image = image.resize((max(resized, round(width * scale)), max(resized, round(height * scale))),
                                 Image.Resampling.BICUBIC)
            left, top = (image.width - self.size) // 2, (image.height - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(self.size, self.size, 3)
            batch.append(pixels.permute(2, 0, 1).float() / 255.0)
        pixels = torch.stack(batch)  # (batch, 3, size, size)
        mean, std = torch.tensor(self.mean).view(1, 3, 1, 1), torch.tensor(self.std).view(1, 3, 1, 1)
        return (pixels - mean) / std
