"""Image+text classification: a label from concat(pooled text, pooled image) — the design's z = concat(z_t, z_v).

N_T is any HF encoder (mean-pooled last hidden states), N_V the image network (frozen; its features are
computed once per image). A small head reads the concatenation; it is saved inside the encoder's
safetensors (`fusion_head.*`), so the folder still loads as a plain HF encoder. With `image_dropout`
some training rows see no image (zero features), so the model also works where an image is missing
or the relevance gate (`gate`) finds it irrelevant; predictions then say whether the image was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records, write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.errors import DataError
from lmforge.metrics.classification import majority_label, single_label_metrics
from lmforge.models.labels import config_with_labels, saved_labels
from lmforge.models.load import quiet_about_own_keys, saved_submodule
from lmforge.models.pooling import masked_mean
from lmforge.vision.gate import RelevanceGate, rate_images
from lmforge.vision.images import load_image
from lmforge.vision.networks import DEFAULT_IMAGE_NETWORK, ImageFeatures
from lmforge.vision.scorer import ImageTextScorer, load_scorer

HEAD_MODULE = "fusion_head"


class ImageTextClassificationParams(BaseModel):
    model_config = STRICT

    name: Literal["image-text-classification"] = "image-text-classification"
    text_column: str = Field("text", description="jsonl/csv field holding the text.")
    image_column: str = Field("image", description="field holding the image path (relative to the file; may be empty).")
    label_column: str = Field("label", description="field holding the label.")
    image_network: str = Field(DEFAULT_IMAGE_NETWORK, description="N_V: efficientnet-lite0 (packaged) or an HF "
                                                                   "CLIP/SigLIP/ViT directory.")
    image_dropout: float = Field(0.1, ge=0, lt=1, description="Share of training rows that see no image (zeros), so "
                                                               "the model copes without one.")
    gate: str | None = Field(None, description="A gate file (`lmforge gate`): an image is used only when the gate "
                                               "finds it relevant to the text.")


@dataclass(frozen=True)
class ImageTextExample:
    text: str
    image: Path | None
    labels: tuple[str, ...]
    where: str


class FusionHead(nn.Module):
    """(batch, text_size + image_size) -> (batch, labels)."""

    def __init__(self, text_size: int, image_size: int, labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.text_size, self.image_size = text_size, image_size
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(text_size + image_size, labels))

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([text, image.to(text.dtype)], dim=-1))


class ImageTextClassification:
    """Single-label classification of (text, image) pairs through a fused representation."""

    default_metric = "accuracy"
    loads_quantized = False
    metric_names = ("accuracy", *(f"{avg}_{m}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")))
    supports_peft = True  # with PEFT the fusion head trains and is saved as one of the adapter's modules_to_save

    def __init__(self, params: ImageTextClassificationParams, labels: list[str] | None = None):
        self.params = params
        self.labels = list(labels or [])
        self.images = ImageFeatures(params.image_network)
        self._gate: tuple[RelevanceGate, ImageTextScorer] | None = None

    @property
    def input_column(self) -> str:
        return self.params.text_column

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[ImageTextExample]:
        p, folder, examples = self.params, Path(path).parent, []
        for number, record in read_records(path, data.format, errors):
            where = f"{path}, line {number}"
            text, image, label = record.get(p.text_column), record.get(p.image_column), record.get(p.label_column)
            if not isinstance(text, str) or not text.strip():
                errors.report(where, f"missing text '{p.text_column}' (set task.text_column)")
                continue
            if image and not (folder / str(image)).is_file():
                errors.report(where, f"image {folder / str(image)} not found (paths are relative to the data file)")
                continue
            if labelled and (label is None or str(label) == ""):
                errors.report(where, f"missing label '{p.label_column}' (set task.label_column)")
                continue
            if labelled and self.labels and str(label) not in self.labels:
                errors.report(where, f"label {label!r} is not one of the training labels: {', '.join(self.labels)}")
                continue
            examples.append(ImageTextExample(text, folder / str(image) if image else None,
                                             (str(label),) if labelled else (), where))
        return examples

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        def labels_of(train: list[ImageTextExample]) -> list[str]:
            self.labels = sorted({e.labels[0] for e in train})
            if len(self.labels) < 2:
                raise DataError(f"the training data has {len(self.labels)} label(s); classification needs at least 2")
            return self.labels
        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "jsonl rows {text, image, label}", key=lambda e: e.labels[0], after_train=labels_of)

    def example_from_text(self, text: str, where: str) -> ImageTextExample:
        return ImageTextExample(text, None, (), where)

    def save_examples(self, examples: list[ImageTextExample], path: Path) -> None:
        write_jsonl(path, [{"text": e.text, "image": str(e.image) if e.image else None, "labels": list(e.labels)}
                           for e in examples])

    def load_examples(self, path: Path) -> list[ImageTextExample]:
        return [ImageTextExample(r["text"], Path(r["image"]) if r.get("image") else None, tuple(r["labels"]),
                                 f"{path}, line {n}") for n, r in read_records(path)]

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None,
                    quantization: dict | None = None) -> PreTrainedModel:  # dtype: cast after; never quantised
        config = config_with_labels(path, self.labels, local_files_only, trust_remote_code)
        saved = saved_submodule(Path(path), HEAD_MODULE)
        with quiet_about_own_keys(saved):
            model = AutoModel.from_pretrained(path, config=config, local_files_only=local_files_only,
                                              trust_remote_code=trust_remote_code)
        head = FusionHead(model.config.hidden_size, self.images.network.feature_size, len(self.labels))
        if saved:
            head.load_state_dict(saved)
        model.add_module(HEAD_MODULE, head)
        return model

    def _image_features(self, example: ImageTextExample) -> tuple[list[float], float, float | None]:
        """(features, 1.0, gate probability) for a usable image; zeros and 0.0 without one or when the gate
        rejects it (the probability is None without a gate)."""
        size = self.images.network.feature_size
        if example.image is None:
            return [0.0] * size, 0.0, None
        probability = None
        image = load_image(example.image) if self.params.gate or not self.images.cached(example.image) else None
        if self.params.gate:
            if self._gate is None:
                gate = RelevanceGate.load(self.params.gate)
                self._gate = (gate, load_scorer(gate.scorer))
            gate, scorer = self._gate
            use, probability = gate.decide(rate_images(scorer, [image], [example.text]))[0]
            if not use:
                return [0.0] * size, 0.0, probability
        return self.images.of(example.image, image), 1.0, probability

    def encode(self, examples: list[ImageTextExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        features = []
        for i, example in enumerate(examples):
            image, present, relevance = self._image_features(example)
            feature = {key: encoded[key][i] for key in encoded.keys()} | {"image_features": image, "image_present": present,
                                                                           "_image_relevance": relevance}
            features.append(feature | ({"labels": index[example.labels[0]]} if example.labels else {}))
        return features

    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "image_features", "image_present")}
        hidden = model(**inputs).last_hidden_state  # (batch, length, hidden)
        text = masked_mean(hidden, batch["attention_mask"])  # (batch, hidden)
        present = batch["image_present"].to(text.dtype)  # (batch,)
        if model.training and self.params.image_dropout:
            present = present * (torch.rand_like(present) >= self.params.image_dropout).to(present.dtype)
        return getattr(model, HEAD_MODULE)(text, batch["image_features"] * present[:, None])

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(model, batch).float()
        return F.cross_entropy(logits, batch["labels"]), logits

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[ImageTextExample]) -> list[dict]:
        rows = torch.softmax(torch.stack(outputs).float(), dim=-1).tolist()
        out = []
        for example, feature, row in zip(examples, features, rows, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            relevance = feature["_image_relevance"]
            out.append({"text": example.text, "label": self.labels[best], "image_used": bool(feature["image_present"]),
                        "probabilities": dict(zip(self.labels, row, strict=True))}
                       | ({"image_relevance": round(relevance, 4)} if relevance is not None else {}))
        return out

    def score(self, predictions: list[dict], examples: list[ImageTextExample], train_examples: list[ImageTextExample]) -> dict:
        index = {label: i for i, label in enumerate(self.labels)}
        gold = [index[e.labels[0]] for e in examples]
        metrics = single_label_metrics([index[p["label"]] for p in predictions], gold, self.labels)
        majority = majority_label([index[e.labels[0]] for e in train_examples])
        baseline = single_label_metrics([majority] * len(examples), gold, self.labels)
        metrics["majority_baseline"] = {k: baseline[k] for k in ("accuracy", "macro_f1", "micro_f1")} | {
            "label": self.labels[majority]}
        metrics["images_used"] = sum(p["image_used"] for p in predictions)
        return metrics

    def from_saved(self, model_dir: Path) -> ImageTextClassification:
        return ImageTextClassification(self.params, saved_labels(model_dir))

