"""Trained fusion (image prefix, ClipCap-style) vs training-free guidance on the same held-out COCO photos.

The 12 COCO val2014 photos in ../shared/data/coco_captions, with their 5 references each, in --folds
folds. For each fold `lmforge train` runs the `image-captioning` task (EfficientNet-Lite0 features →
k SmolLM2 input embeddings, the LM frozen) on the other photos — each photo as --views images on disk
(itself plus random crops, half mirrored) × its 5 captions — validates on those training photos (so
the held-out ones never pick the epoch) and captions the held-out photos (its test split) greedily.
Against: MAGIC-style guided contrastive search (β = --beta) with the same LM, zero-shot. COCO BLEU-4,
ROUGE-L and CIDEr-D over the 12 photos, each captioned by the model that never saw it.

    python bench/vision_prefix.py --folds 4 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps
from vision_guidance import PROMPT, coco_images

from lmforge.cli import main as lmforge
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.metrics.captions import caption_scores
from lmforge.recipes.generate import open_generator
from lmforge.vision.images import load_image
from lmforge.vision.scorer import load_scorer


def views(image: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """The image and `count − 1` random crops (70–100% of each side), half of them mirrored."""
    generator = torch.Generator().manual_seed(seed)
    out = [image]
    for _ in range(count - 1):
        scale = 0.7 + 0.3 * float(torch.rand(1, generator=generator))
        width, height = int(image.width * scale), int(image.height * scale)
        left = int(float(torch.rand(1, generator=generator)) * (image.width - width))
        top = int(float(torch.rand(1, generator=generator)) * (image.height - height))
        view = image.crop((left, top, left + width, top + height))
        out.append(ImageOps.mirror(view) if float(torch.rand(1, generator=generator)) < 0.5 else view)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--views", type=int, default=8, help="images per training photo (itself + random crops)")
    parser.add_argument("--prefix-length", type=int, default=10)
    parser.add_argument("--class-names", type=int, default=0, help="task.class_names: top ImageNet classes in words")
    parser.add_argument("--beta", type=float, default=1.0, help="guidance weight of the zero-shot baseline")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    args = parser.parse_args()

    paths, references = coco_images()
    if not paths:
        raise SystemExit("../shared/data/coco_captions is absent")
    images = [load_image(p) for p in paths]
    work = Path(tempfile.mkdtemp(prefix="vision-prefix-"))
    view_names = []
    for n, image in enumerate(images):
        names = []
        for v, view in enumerate(views(image, args.views, seed=n)):
            view.save(work / f"{n}-{v}.png")
            names.append(f"{n}-{v}.png")
        view_names.append(names)
    config = work / "config.yaml"
    config.write_text(f"task: {{name: image-captioning, prefix_length: {args.prefix_length}, max_new_tokens: "
                      f"{args.max_new_tokens}, class_names: {args.class_names}}}\nmodel: smollm2-135m-instruct\n")

    started = time.perf_counter()
    trained: dict[int, str] = {}
    for fold in range(args.folds):
        held = [i for i in range(len(images)) if i % args.folds == fold]
        kept = [i for i in range(len(images)) if i not in held]
        train = write_jsonl(work / f"train-{fold}.jsonl", [{"image": name, "caption": caption} for i in kept
                                                           for name in view_names[i] for caption in references[i]])
        validation = write_jsonl(work / f"validation-{fold}.jsonl",
                                 [{"image": view_names[i][0], "caption": references[i]} for i in kept])
        test = write_jsonl(work / f"test-{fold}.jsonl", [{"image": view_names[i][0], "caption": references[i]} for i in held])
        run = work / f"run-{fold}"
        code = lmforge(["train", str(config), f"data.train={train}", f"data.validation={validation}", f"data.test={test}",
                        f"train.output_dir={run}", f"train.epochs={args.epochs}", f"train.lr={args.lr}",
                        "train.batch_size=16", "train.precision=bf16", "train.warmup_ratio=0.1", "train.tensorboard=false",
                        "train.keep_checkpoints=1"])
        if code:
            raise SystemExit(f"fold {fold}: lmforge train failed ({code})")
        predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        for i, row in zip(held, predictions, strict=True):
            trained[i] = row["generated"]
    train_seconds = time.perf_counter() - started

    generator = open_generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens, stop_strings=["\n"])
    tokenizer = generator.tokenizer
    prompts = [ids + tokenizer("A photo of", add_special_tokens=False)["input_ids"]
               for ids in generator.prompt_ids([PROMPT] * len(images))]
    guided_params = DecodeParams(strategy="contrastive", top_k=45, penalty_alpha=0.1, image_weight=args.beta)
    out = generate(generator.model, tokenizer, DecodeRequest(prompts, guided_params, args.max_new_tokens, ["\n"],
                                                             batch_size=4,
                                                             inputs=PromptInputs(images=images, image_scorer=load_scorer())))
    guided = ["A photo of" + tokenizer.decode(c[0].tokens, skip_special_tokens=True) for c in out]
    prefixed = [trained[i] for i in range(len(images))]
    print(f"\n{len(images)} photos, {args.folds} folds, {args.epochs} epochs each ({train_seconds:.0f} s for all folds); "
          f"runs in {work}\n")
    print("| captions | BLEU-4 | ROUGE-L | CIDEr-D |")
    print("|---|---|---|---|")
    for name, texts in ((f"guided zero-shot (β={args.beta})", guided), ("trained image prefix (held out)", prefixed)):
        s = caption_scores(texts, references)
        print(f"| {name} | {s['bleu_4']:.2f} | {s['rouge_l']:.2f} | {s['cider']:.2f} |")
    print()
    for path, a, b, refs in zip(paths, guided, prefixed, references, strict=True):
        print(f"{path.name}\n  reference: {refs[0]}\n  guided:    {a}\n  prefix:    {b}")


if __name__ == "__main__":
    main()
