"""The visual-relevance gate on real photos: relevant (image, caption) pairs vs shuffled ones.

Pairs: the 12 COCO val2014 photos in ../shared/data/coco_captions with their 5 reference captions
each (from MAGIC's result file), and scikit-image's photos with one description each; every caption
is also paired with another photo as an irrelevant pair. Prints the gate's accuracy on the fitted
pairs and leave-one-image-out, for each available scorer.

    python bench/vision_gate.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from vision_guidance import SKIMAGE_PHOTOS, coco_images

from lmforge.packages import package_dir
from lmforge.recipes.gate import fit_gate_file


def main() -> None:
    paths, references = coco_images()
    rows = [{"image": str(p), "text": text} for p, refs in zip(paths, references, strict=True) for text in refs]
    sk = package_dir("skimage")
    if sk:
        rows += [{"image": str(sk / "data" / name), "text": text} for name, text in SKIMAGE_PHOTOS.items()]
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        report = fit_gate_file(str(data), str(Path(folder) / "gate.json"), "efficientnet-minilm", 0.5, True, 0)
        print(json.dumps(report, indent=2))
        print(json.loads((Path(folder) / "gate.json").read_text()))


if __name__ == "__main__":
    main()
