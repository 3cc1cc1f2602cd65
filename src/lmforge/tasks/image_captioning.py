"""Image captioning with a decoder-only LM and an image prefix (ClipCap-style fusion, `vision/prefix.py`).

Each image becomes `prefix_length` input embeddings of the LM (a trained projection of the vision
network's features), followed by `prompt` and the caption; the loss counts caption tokens only. The
LM is frozen unless `train_lm`. The projection is saved inside the LM's safetensors (`image_prefix.*`), so
the folder still loads as a plain HF causal LM. Rows are
{image, caption} with the image path relative to the data file; `caption` may be a list of
references (each one a training pair; all of them score the output). Evaluation decodes with
`decode` and reports COCO BLEU-1..4, ROUGE-L and CIDEr-D; with `decode.image_weight` (strategy contrastive)
the prefixed LM is also steered by the image-text scorer (MAGIC-style guidance on top of fusion).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import reference_list
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records, write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.decode.generate import cut_at_stop_strings, generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.errors import ConfigError
from lmforge.metrics.captions import CAPTION_METRICS, caption_scores
from lmforge.models.load import quiet_about_own_keys, saved_submodule
from lmforge.vision.images import load_image
from lmforge.vision.networks import DEFAULT_IMAGE_NETWORK, ImageFeatures
from lmforge.vision.prefix import ImagePrefix

IGNORE = -100
PREFIX_MODULE = "image_prefix"  # the projection's name inside the LM (so it is saved with it)
SAMPLES_IN_REPORT = 5


class ImageCaptioningParams(BaseModel):
    model_config = STRICT

    name: Literal["image-captioning"] = "image-captioning"
    image_column: str = Field("image", description="jsonl/csv field holding the image path (relative to the file).")
    caption_column: str = Field("caption", description="field holding the caption, or a list of reference captions.")
    image_network: str = Field(DEFAULT_IMAGE_NETWORK, description="N_V: efficientnet-lite0 (packaged) or an HF "
                                                                   "CLIP/SigLIP/ViT directory; its features feed the prefix.")
    prefix_length: int = Field(10, gt=0, description="LM input embeddings the image becomes (k).")
    prompt: str = Field("", description="Text between the image prefix and the caption, e.g. 'A photo of'.")
    class_names: int = Field(0, ge=0, le=20, description="Also tell the LM, in words, the image network's top N ImageNet "
                                                         "classes ('Objects: tabby cat, …') before the prompt "
                                                         "(efficientnet-lite0 only); 0 = off.")
    train_lm: bool = Field(False, description="Train the LM's own weights too (default: only the prefix projection).")
    max_target_length: int = Field(48, gt=0, description="Truncate captions to this many tokens for training.")
    max_new_tokens: int = Field(24, gt=0, description="Longest generated caption.")
    stop_strings: list[str] = Field(default_factory=lambda: ["\n"], description="Cut captions before these.")
    decode: DecodeParams = Field(default_factory=DecodeParams, description="How captions are decoded.")


@dataclass(frozen=True)
class ImageCaptionExample:
    image: Path
    references: list[str] | None
    where: str

    def to_record(self) -> dict:
        return {"image": str(self.image)} | ({"caption": self.references} if self.references else {})


class ImageCaptioning:
    """Captions from image features read by an LM as a soft prompt."""

    default_metric = "cider"
    loads_quantized = False
    metric_names = CAPTION_METRICS
    supports_peft = True  # with PEFT the prefix trains and is saved as one of the adapter's modules_to_save

    def __init__(self, params: ImageCaptioningParams, labels: list[str] | None = None):
        self.params = params
        self.labels: list[str] = []
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.images = ImageFeatures(params.image_network)
        self._classes: dict[Path, str] = {}

    @property
    def input_column(self) -> str:
        return self.params.image_column

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[ImageCaptionExample]:
        p, folder, examples = self.params, Path(path).parent, []
        for number, record in read_records(path, data.format, errors):
            where = f"{path}, line {number}"
            image = record.get(p.image_column)
            if not isinstance(image, str) or not image.strip():
                errors.report(where, f"missing image path '{p.image_column}' (set task.image_column)")
                continue
            if not (folder / image).is_file():
                errors.report(where, f"image {folder / image} not found (paths are relative to the data file)")
                continue
            references = reference_list(record.get(p.caption_column))
            if labelled and not references:
                errors.report(where, f"missing caption '{p.caption_column}' (a string or a list of references)")
                continue
            examples.append(ImageCaptionExample(folder / image, references if labelled else None, where))
        return examples

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "jsonl rows {image, caption} (caption may be a list of references)")

    def example_from_text(self, text: str, where: str) -> ImageCaptionExample:
        return ImageCaptionExample(Path(text.strip()), None, where)

    def save_examples(self, examples: list[ImageCaptionExample], path: Path) -> None:
        write_jsonl(path, [e.to_record() for e in examples])

    def load_examples(self, path: Path) -> list[ImageCaptionExample]:
        out = []
        for number, record in read_records(path):
            references = reference_list(record.get("caption"))
            out.append(ImageCaptionExample(Path(record["image"]), references, f"{path}, line {number}"))
        return out

    # --- model ----------------------------------------------------------------------------------
    def adapt_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None,
                    quantization: dict | None = None) -> PreTrainedModel:  # dtype: cast after; never quantised
        saved = saved_submodule(Path(path), PREFIX_MODULE)
        with quiet_about_own_keys(saved):
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_files_only,
                                                         trust_remote_code=trust_remote_code)
        if model.config.is_encoder_decoder:
            raise ConfigError("task image-captioning needs a decoder-only model (the image becomes its first inputs)")
        if not self.params.train_lm:
            model.requires_grad_(False)
        prefix = ImagePrefix(self.images.network.feature_size, model.config.hidden_size, self.params.prefix_length)
        if saved:
            prefix.load_state_dict(saved)
        model.add_module(PREFIX_MODULE, prefix)
        return model

    def _class_line(self, path: Path) -> str:
        """'Objects: tabby cat, Egyptian cat, tiger cat.' — the image network's top classes in words."""
        network = self.images.network
        if not hasattr(network, "class_probabilities"):
            raise ConfigError(f"task.class_names needs an image classifier ({DEFAULT_IMAGE_NETWORK}); "
                              f"{self.params.image_network} has no class names")
        if path not in self._classes:
            top = network.class_probabilities([load_image(path)])[0].topk(self.params.class_names).indices.tolist()
            self._classes[path] = "Objects: " + ", ".join(network.class_names[i].split(", ")[0] for i in top) + "."
        return self._classes[path]

    def encode(self, examples: list[ImageCaptionExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        """One feature per (image, reference) with labels; one per image without references."""
        self.tokenizer = tokenizer
        prompt = tokenizer(self.params.prompt, add_special_tokens=False)["input_ids"] if self.params.prompt else []
        features = []
        for index, example in enumerate(examples):
            image = self.images.of(example.image)
            context = tokenizer(self._class_line(example.image), add_special_tokens=False)["input_ids"] \
                if self.params.class_names else []
            start = [tokenizer.pad_token_id] * self.params.prefix_length + context + prompt
            for reference in example.references or [None]:
                ids, labels = list(start), [IGNORE] * len(start)
                if reference is not None:
                    caption = tokenizer(" " + reference.strip(), add_special_tokens=False)["input_ids"]
                    caption = caption[: self.params.max_target_length] + [tokenizer.eos_token_id]
                    ids, labels = ids + caption, labels + caption
                feature = {"input_ids": ids, "attention_mask": [1] * len(ids), "image_features": image,
                           "_example": index, "_prompt_length": len(start)}
                features.append(feature | ({"labels": labels} if reference is not None else {}))
        return features

    def _soft_prompt(self, model: PreTrainedModel, image_features: torch.Tensor) -> torch.Tensor:
        prefix = getattr(model, PREFIX_MODULE)
        return prefix(image_features.to(next(prefix.parameters()).dtype))  # (batch, k, hidden)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = model.get_input_embeddings()(batch["input_ids"])  # (batch, length, hidden)
        soft = self._soft_prompt(model, batch["image_features"]).to(embeds.dtype)
        k = soft.shape[1]
        embeds = torch.cat([soft, embeds[:, k:]], dim=1)
        out = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"])
        return out.loss, out.logits

    # --- outputs --------------------------------------------------------------------------------
    def generate(self, model: PreTrainedModel, features: list[dict], examples: list[ImageCaptionExample], batch_size: int,
                 pad_id: int, precision: str = "fp32", progress: bool = False) -> list[dict]:
        """One caption per example (its first feature: they differ only in the reference)."""
        first = {}
        for feature in features:
            first.setdefault(feature["_example"], feature)
        chosen = [first[i] for i in range(len(examples))]
        k = self.params.prefix_length
        with torch.no_grad():
            soft = self._soft_prompt(model, torch.tensor([f["image_features"] for f in chosen]))
        prompts = [f["input_ids"][k:f["_prompt_length"]] for f in chosen]
        images = [load_image(e.image) for e in examples] if self.params.decode.image_weight else None  # + guidance
        outputs = generate(model, self.tokenizer, DecodeRequest(prompts, self.params.decode,
                                                                self.params.max_new_tokens, self.params.stop_strings,
                                                                batch_size, precision, progress,
                                                                inputs=PromptInputs(prompt_embeds=soft, images=images)))
        return [{"generated": self.text(candidates[0].tokens)} | candidates[0].decision_fields() for candidates in outputs]

    def text(self, tokens: list[int]) -> str:
        caption = cut_at_stop_strings(self.tokenizer.decode(tokens, skip_special_tokens=True), self.params.stop_strings)
        return (self.params.prompt + caption).strip() if self.params.prompt else caption.strip()

    def score(self, predictions: list[dict], examples: list[ImageCaptionExample],
              train_examples: list[ImageCaptionExample]) -> dict:
        hypotheses = [p["generated"] for p in predictions]
        scores = caption_scores(hypotheses, [e.references or [] for e in examples])
        headline = ("cider", "bleu_4", "rouge_l")  # the report's summary line shows the first three
        metrics: dict = {k: scores[k] for k in headline} | {k: v for k, v in scores.items() if k not in headline}
        metrics["count"] = len(examples)
        metrics["empty_outputs"] = sum(not h for h in hypotheses)
        metrics["samples"] = [e.to_record() | {"generated": h}
                              for e, h in zip(examples[:SAMPLES_IN_REPORT], hypotheses, strict=False)]
        return metrics

    def from_saved(self, model_dir: Path) -> ImageCaptioning:
        return ImageCaptioning(self.params)

