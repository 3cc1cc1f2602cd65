"""lmforge's COCO caption metrics vs the reference implementation (pycocoevalcap, when installed; its PTB
tokenizer needs Java) on MAGIC's own outputs in ../shared/data/coco_captions.

MAGIC (Su et al. 2022) reports BLEU-4 12.9, ROUGE-L 39.9, CIDEr 49.3 for magic_result.json;
contrastive_result.json is its text-only contrastive-search baseline.

    pip install pycocoevalcap   # optional: the reference figures
    python bench/caption_metrics.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lmforge.metrics.captions import CAPTION_METRICS, caption_scores

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_captions"


def reference_scores(hypotheses: list[str], references: list[list[str]]) -> dict[str, float] | None:
    """pycocoevalcap's BLEU/ROUGE-L/CIDEr (0–100), or None when it (or Java) is missing."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        return None
    tokenizer = PTBTokenizer()
    try:
        gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
        res = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
    except OSError:
        return None
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {f"bleu_{k + 1}": 100 * b for k, b in enumerate(bleu)} | {"rouge_l": 100 * rouge, "cider": 100 * cider}


def main() -> None:
    for name in ("magic_result.json", "contrastive_result.json"):
        rows = json.loads((COCO / name).read_text())
        hypotheses, references = [r["prediction"] for r in rows], [r["captions"] for r in rows]
        start = time.perf_counter()
        ours = caption_scores(hypotheses, references)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = reference_scores(hypotheses, references)
        their_seconds = time.perf_counter() - start
        print(f"\n{name}: {len(rows)} images; lmforge {seconds:.1f} s"
              + (f", pycocoevalcap {their_seconds:.1f} s" if theirs else " (pycocoevalcap not installed)"))
        print("| metric | lmforge | pycocoevalcap | difference |\n|---|---|---|---|")
        for metric in CAPTION_METRICS:
            ref = f"{theirs[metric]:.3f} | {ours[metric] - theirs[metric]:+.4f}" if theirs else "– | –"
            print(f"| {metric} | {ours[metric]:.3f} | {ref} |")


if __name__ == "__main__":
    main()
