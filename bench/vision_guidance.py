"""Vision-guided decoding (MAGIC-style) vs unguided decoding on real photos, with the packaged models.

SmolLM2-135M-Instruct writes a one-sentence caption for each image: greedy, plain contrastive search
(β = 0) and contrastive search guided by the default image-text scorer (EfficientNet-Lite0 classes ×
MiniLM) at each --betas value. Images: the 12 COCO val2014 photos in ../shared/data/coco_captions
(references from MAGIC's result file; COCO BLEU-4 / ROUGE-L / CIDEr-D) and scikit-image's photos
(one-line descriptions as references). Every caption starts with --caption-start. Reported per setting: caption metrics, the scorer's mean
image-text score of the final caption (and how often an image's own caption scores highest among all
captions — retrieval accuracy), tokens/s and its ratio to greedy, and the scorer's cost per step.

    python bench/vision_guidance.py --betas 0.5,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.metrics.captions import caption_scores
from lmforge.packages import package_dir
from lmforge.recipes.generate import open_generator
from lmforge.vision.images import load_image
from lmforge.vision.scorer import load_scorer

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_captions"
SKIMAGE_PHOTOS = {"chelsea.png": "A tabby cat lying on a rug.", "coffee.png": "A cup of coffee on a saucer.",
                  "rocket.jpg": "A rocket on its launch pad.", "astronaut.png": "An astronaut in a space suit.",
                  "motorcycle_left.png": "A motorcycle parked in a garage."}
PROMPT = "Write a one-sentence caption for a photo."


def coco_images() -> tuple[list[Path], list[list[str]]]:
    """The shared COCO photos and their references (MAGIC's result file carries them)."""
    folder = COCO / "images"
    if not folder.is_dir():
        return [], []
    references = {r["image_name"]: r["captions"] for r in json.loads((COCO / "magic_result.json").read_text())}
    paths = sorted(p for p in folder.glob("*.jpg") if p.name in references)
    return paths, [references[p.name] for p in paths]


def retrieval_accuracy(scores: torch.Tensor) -> float:
    """Share of images whose own caption scores highest among all captions ((images, captions) matrix)."""
    return float((scores.argmax(dim=1) == torch.arange(len(scores))).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", default="0.5,1,2", help="guidance weights to try")
    parser.add_argument("--alpha", type=float, default=0.1, help="degeneration penalty (MAGIC: 0.1)")
    parser.add_argument("--top-k", type=int, default=45, help="candidates per step (MAGIC: 45)")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--caption-start", default="A photo of", help="the answer's first words, given to every "
                                                                    "setting (ZeroCap/MAGIC-style prompt)")
    args = parser.parse_args()

    coco_paths, coco_refs = coco_images()
    sk = package_dir("skimage")
    sk_paths = [sk / "data" / name for name in SKIMAGE_PHOTOS] if sk else []
    paths, references = coco_paths + sk_paths, coco_refs + [[SKIMAGE_PHOTOS[p.name]] for p in sk_paths]
    print(f"{len(coco_paths)} COCO photos, {len(sk_paths)} scikit-image photos")
    images = [load_image(p) for p in paths]
    generator = open_generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens, stop_strings=["\n"])
    start_ids = generator.tokenizer(args.caption_start, add_special_tokens=False)["input_ids"] if args.caption_start else []
    prompts = [ids + start_ids for ids in generator.prompt_ids([PROMPT] * len(images))]
    scorer = load_scorer()
    embeddings = scorer.embed_images(images)

    settings = [("greedy", DecodeParams()), ("contrastive β=0", DecodeParams(strategy="contrastive", top_k=args.top_k,
                                                                             penalty_alpha=args.alpha))]
    settings += [(f"guided β={b}", DecodeParams(strategy="contrastive", top_k=args.top_k, penalty_alpha=args.alpha,
                                               image_weight=float(b))) for b in args.betas.split(",")]
    calls = {"n": 0, "s": 0.0}
    original = scorer.score

    def timed(*a, **k):
        start = time.perf_counter()
        out = original(*a, **k)
        calls["n"] += 1
        calls["s"] += time.perf_counter() - start
        return out
    scorer.score = timed
    greedy_speed = None
    print("| setting | COCO BLEU-4 | COCO ROUGE-L | COCO CIDEr | photos CIDEr | image-text score | retrieval acc | "
          "tok/s | vs greedy | scorer ms/step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    samples = {}
    for name, params in settings:
        calls.update(n=0, s=0.0)
        start = time.perf_counter()
        out = generate(generator.model, generator.tokenizer, DecodeRequest(prompts, params, args.max_new_tokens,
                                                                           ["\n"], batch_size=1,
                                                                           inputs=PromptInputs(images=images if params.image_weight else None, image_scorer=scorer)))
        seconds = time.perf_counter() - start
        tokens = sum(len(c[0].tokens) for c in out)
        texts = [generator.task.text(start_ids + c[0].tokens).strip() for c in out]
        samples[name] = texts
        calls_made, scorer_s = calls["n"], calls["s"]
        matrix = original(embeddings, [texts] * len(texts)) / getattr(scorer, "scale", 1.0)  # (images, captions)
        coco = caption_scores(texts[:len(coco_paths)], references[:len(coco_paths)]) if coco_paths else {}
        photos = caption_scores(texts[len(coco_paths):], references[len(coco_paths):]) if sk_paths else {}
        speed = tokens / seconds
        greedy_speed = greedy_speed or speed
        per_step = 1000 * scorer_s / calls_made if calls_made else 0.0
        print(f"| {name} | {coco.get('bleu_4', 0):.2f} | {coco.get('rouge_l', 0):.2f} | {coco.get('cider', 0):.2f} | "
              f"{photos.get('cider', 0):.2f} | {float(matrix.diagonal().mean()):.3f} | {retrieval_accuracy(matrix):.2f} | "
              f"{speed:.1f} | {speed / greedy_speed:.2f}× | {per_step:.1f} |")
    for name, texts in samples.items():
        print(f"\n{name}:")
        for path, text in zip(paths, texts, strict=True):
            print(f"  {path.name[-16:]:>16}  {text}")


if __name__ == "__main__":
    main()
