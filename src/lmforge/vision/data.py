"""Image-text data: a .jsonl file of {"image": path, "text": ...} rows, or a folder of images with a captions file.

Image paths are relative to the data file's folder. A folder holds `captions.jsonl` (same rows) or
`captions.tsv` (`file name<TAB>caption`, one caption per line; an image may have several).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import DataError


@dataclass(frozen=True)
class ImageText:
    image: Path
    text: str
    relevant: bool = True  # whether the text goes with the image (the gate's label)


def _row(value: object, where: str, folder: Path) -> ImageText:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object with 'image' and 'text'")
    image, text = value.get("image"), value.get("text", value.get("caption"))
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: missing 'image' (the image file's path, relative to the data file)")
    if not isinstance(text, str):
        raise DataError(f"{where}: missing 'text' (or 'caption'), the text that goes with the image")
    relevant = value.get("relevant", True)
    if not isinstance(relevant, bool):
        raise DataError(f"{where}: 'relevant' must be true or false, not {relevant!r}")
    return ImageText(folder / image, text, relevant)


def read_image_text(path: str | Path) -> list[ImageText]:
    """Rows of a .jsonl file, or of a folder's captions.jsonl / captions.tsv."""
    path = Path(path)
    if path.is_dir():
        for name in ("captions.jsonl", "captions.tsv"):
            if (path / name).is_file():
                return read_image_text(path / name)
        raise DataError(f"{path}: a folder of images needs captions.jsonl or captions.tsv (file name<TAB>caption)")
    if not path.is_file():
        raise DataError(f"{path}: image-text data not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if path.suffix == ".tsv":
            name, tab, text = line.partition("\t")
            if not tab:
                raise DataError(f"{where}: expected 'file name<TAB>caption'")
            rows.append(ImageText(path.parent / name.strip(), text.strip()))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error.msg})") from None
        rows.append(_row(value, where, path.parent))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows
