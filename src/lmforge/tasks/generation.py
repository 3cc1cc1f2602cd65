"""Generation (translation, summarisation, dialogue) with decoder-only and encoder-decoder models.

Decoder-only: prompt and reply are one sequence, the prompt rendered through the model's chat template
when it has one (`task.chat_template`), and the loss counts only reply tokens (prompt labels are
-100). Encoder-decoder: the prompt is the encoder input and the reply the labels. Evaluation decodes
greedily and scores BLEU, chrF and ROUGE against the references.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import (
    GenerationExample,
    iter_generation,
    load_saved,
    read_generation,
    read_parallel,
)
from lmforge.data.params import DataFile, DataParams
from lmforge.data.readers import detect_format, locate, write_jsonl
from lmforge.data.splits import Splits, assemble_splits
from lmforge.decode.generate import cut_at_stop_strings, generate
from lmforge.decode.params import DEFAULT_MAX_NEW_TOKENS, DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.errors import DataError
from lmforge.metrics.captions import CAPTION_METRICS, caption_scores
from lmforge.metrics.generation import ROUGE_TYPES, generation_scores
from lmforge.models.quantization import pretrained_kwargs
from lmforge.tasks.chat_format import Segment, has_chat_template, plain_segments, template_segments

IGNORE = -100
SAMPLES_IN_REPORT = 5


def reply_only_logits_supported(model: PreTrainedModel) -> bool:
    """Whether logits are a plain linear map of the decoder's last hidden state (no soft-capping or scaling,
    no virtual tokens from prompt/prefix tuning)."""
    if hasattr(model, "peft_config"):
        if any(c.is_prompt_learning for c in model.peft_config.values()):
            return False
        model = model.get_base_model()
    config = model.config
    plain = not any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"))
    return plain and type(model).__name__.endswith("ForCausalLM") and model.get_output_embeddings() is not None


def reply_only_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor],
                    label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-LM loss with the vocabulary projection computed only where a label counts.

    Same value as HF's loss; prompt positions (often half of a translation pair) skip the
    largest matrix product of the step and the full-vocabulary softmax."""
    model = model.get_base_model() if hasattr(model, "peft_config") else model  # LoRA layers live inside it
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    counted = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[:, :-1][counted]).float()  # (counted tokens, vocab)
    return torch.nn.functional.cross_entropy(logits, targets[counted], label_smoothing=label_smoothing), logits


class GenerationParams(BaseModel):
    model_config = STRICT

    name: Literal["generation"] = "generation"
    source_column: str = Field("source", description="jsonl/csv field holding the source text.")
    target_column: str = Field("target", description="jsonl/csv field holding the reference output.")
    messages_column: str = Field("messages", description="jsonl field holding chat turns [{role, content}, …] (dialogue rows).")
    task_column: str = Field("task", description="jsonl field naming a row's task (multi-task data, "
                                                 "tuning.strategy_network); optional.")
    prompt: str = Field("{source}", description="How a source becomes the user's message, e.g. 'Translate to French: {source}'.")
    system: str | None = Field(None, description="System message put before every source → target prompt.")
    chat_template: bool | None = Field(None, description="Use the tokenizer's chat template (default: when it has one, "
                                                          "for decoder-only models); false = plain 'prompt\\ntarget' text.")
    learn_all_replies: bool = Field(True, description="Dialogues: learn every assistant turn, not only the last.")
    max_target_length: int = Field(128, gt=0, description="Truncate references to this many tokens for training.")
    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, gt=0, description="Longest generated output when evaluating and "
                                                                        "predicting.")
    stop_strings: list[str] = Field(default_factory=list, description="Cut each output before the first of these, "
                                                                        "e.g. ['\\n'] for one-line answers.")
    caption_metrics: bool = Field(False, description="Also score COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D, "
                                                      "PTB-tokenised) against every reference of a row (a target "
                                                      "column may hold a list of references).")
    decode: DecodeParams = Field(default_factory=DecodeParams, description="How outputs are decoded when evaluating and "
                                                                            "predicting (strategy, beams, sampling, rules).")

    @field_validator("prompt")
    @classmethod
    def _has_source(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise ValueError(f"is not a valid template ({error}); write {{{{ and }}}} for literal braces") from None
        if names - {"source"}:
            raise ValueError(f"names {{{sorted(names - {'source'})[0]}}}, but the only field is {{source}} (the source "
                             "text); write {{ and }} for literal braces")
        if "source" not in names:
            raise ValueError("must contain {source}, where the source text goes (e.g. 'Summarise: {source}')")
        return value


class Generation:
    """Source → target and dialogue generation; evaluated by decoding with `params.decode` (greedy by default)."""

    default_metric = "bleu"
    loads_quantized = True
    label_smoothing = 0.0

    def __init__(self, params: GenerationParams, labels: list[str] | None = None):
        self.params = params
        captions = tuple(f"coco_{name}" for name in CAPTION_METRICS) if params.caption_metrics else ()
        self.metric_names = ("bleu", "chrf", *ROUGE_TYPES, "exact_match", *captions)
        self.labels: list[str] = []
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.encoder_decoder = False
        self.target_paths: dict[str, str] = {}  # source file -> aligned target file

    @property
    def input_column(self) -> str:
        """The JSON field `lmforge predict --input -` reads."""
        return self.params.source_column

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[GenerationExample]:
        target_path = self.target_paths.get(path)
        if target_path is None and detect_format(locate(path), data.format) != "text":
            p = self.params
            return read_generation(path, p.source_column, p.target_column, p.messages_column, errors, labelled, data.format,
                                   p.task_column)
        if labelled and target_path is None:
            raise DataError(f"{path}: a plain-text file holds only sources; give the references as "
                            f"{{path: {path}, target_path: FILE}} or use .jsonl rows {{source, target}}")
        return read_parallel(path, target_path, errors)

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        self.target_paths = {spec.path: spec.target_path for spec in (data.train, data.validation, data.test)
                             if isinstance(spec, DataFile) and spec.target_path}
        return assemble_splits(lambda path, own, errors: self.read_file(path, own, errors, True), data, seed,
                               "jsonl rows {source, target} or {messages}, or aligned text files {path, target_path}",
                               iterate=self._iterate)

    def _iterate(self, path: str, data: DataParams, errors: RowErrors) -> Iterator[GenerationExample]:
        """A training file's rows one at a time (data.streaming)."""
        if detect_format(locate(path), data.format) == "text":
            return iter(self.read_file(path, data, errors, True))
        p = self.params
        return iter_generation(path, p.source_column, p.target_column, p.messages_column, errors, True, data.format,
                               p.task_column)

    def example_from_text(self, text: str, where: str) -> GenerationExample:
        return GenerationExample(text, None, where)

    def save_examples(self, examples: list[GenerationExample], path: Path) -> None:
        write_jsonl(path, [e.to_record() for e in examples])

    def load_examples(self, path: Path) -> list[GenerationExample]:
        return load_saved(path)

    # --- model ----------------------------------------------------------------------------------
    def adapt_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        config = AutoConfig.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
        return auto.from_pretrained(path, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
                                    **pretrained_kwargs(dtype, quantization))

    def _uses_template(self) -> bool:
        chosen = self.params.chat_template
        return not self.encoder_decoder and has_chat_template(self.tokenizer) and chosen is not False

    def _conversation(self, example: GenerationExample) -> list[dict]:
        if example.messages is not None:
            return example.messages
        system = [{"role": "system", "content": self.params.system}] if self.params.system else []
        return system + [{"role": "user", "content": self.params.prompt.format(source=example.source)}]

    def segments(self, example: GenerationExample) -> list[Segment]:
        """The example as text segments; the last is the reply to learn (when there is one) or the open prompt."""
        eos = self.tokenizer.eos_token or ""
        if self._uses_template():
            return template_segments(self.tokenizer, self._conversation(example), example.target, example.where,
                                     self.params.learn_all_replies)
        if example.messages is None:  # a plain pair: prompt, newline, target + EOS
            prompt = self.params.prompt.format(source=example.source) + "\n"
            return [(prompt, False)] + ([(example.target + eos, True)] if example.target is not None else [])
        return plain_segments(example.messages, example.target, eos, self.params.learn_all_replies)

    def encode(self, examples: list[GenerationExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        self.tokenizer = tokenizer
        encode_one = self._encode_seq2seq if self.encoder_decoder else self._encode_causal
        return [encode_one(example, max_length) | {"_example": i} for i, example in enumerate(examples)]

    def _encode_causal(self, example: GenerationExample, max_length: int) -> dict:
        segments = self.segments(example)
        has_reply = example.target is not None
        prompt_segments = segments[:-1] if has_reply else segments
        ids: list[int] = []
        labels: list[int] = []
        special = not self._uses_template()  # a template writes its own BOS; plain text gets the tokenizer's
        for n, (text, learn) in enumerate(prompt_segments):
            piece = self.tokenizer(text, add_special_tokens=special and n == 0)["input_ids"]
            ids += piece
            labels += piece if learn else [IGNORE] * len(piece)
        ids, labels = ids[-max_length:], labels[-max_length:]  # keep the end: it leads into the reply
        feature = {"_prompt_length": len(ids)}
        if has_reply:
            reply = self.tokenizer(segments[-1][0], add_special_tokens=False)["input_ids"][: self.params.max_target_length]
            ids, labels = ids + reply, labels + reply
            feature["labels"] = labels
        return feature | {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def _encode_seq2seq(self, example: GenerationExample, max_length: int) -> dict:
        if example.messages is not None:
            source = "".join(text for text, _ in plain_segments(example.messages, None, ""))
        else:
            source = self.params.prompt.format(source=example.source)
        ids = self.tokenizer(source, truncation=True, max_length=max_length)["input_ids"]
        feature = {"input_ids": ids, "attention_mask": [1] * len(ids), "_prompt_length": len(ids)}
        if example.target is not None:
            target = self.tokenizer(text_target=example.target, truncation=True, max_length=self.params.max_target_length)
            feature["labels"] = target["input_ids"]
        return feature

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over reply tokens; (loss, logits of the counted positions)."""
        if not self.encoder_decoder and reply_only_logits_supported(model):
            return reply_only_loss(model, batch, self.label_smoothing)
        outputs = model(**batch)  # HF shifts the labels for causal LMs and builds decoder inputs for seq2seq
        if not self.label_smoothing:
            return outputs.loss, outputs.logits
        logits, labels = outputs.logits.float(), batch["labels"]
        if not self.encoder_decoder:  # position t predicts token t + 1
            logits, labels = logits[:, :-1], labels[:, 1:]
        labels = labels[:, -logits.shape[1]:]  # prompt/prefix tuning prepends virtual positions to the logits
        logits = logits[:, -labels.shape[1]:]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                                 label_smoothing=self.label_smoothing)
        return loss, outputs.logits

    # --- outputs --------------------------------------------------------------------------------
    def decode_by_expert(self, model: PreTrainedModel, prompts: list[list[int]], batch_size: int, pad_id: int,
                         precision: str, decode: Callable[[list[int]], list]) -> tuple[list, list[tuple[str, float]]]:
        """`decode(rows)` over every prompt: one model is one expert (the strategy network routes among several);
        (each prompt's output, each prompt's (expert, router probability) — none here)."""
        return decode(list(range(len(prompts)))), []

    def expert_router(self, model: PreTrainedModel, pad_id: int, precision: str) -> tuple[Callable, Callable] | None:
        """(route(prompts) -> each prompt's expert name, switch(expert)) where the model has experts; None here."""
        return None

    def generate(self, model: PreTrainedModel, features: list[dict], examples: list[GenerationExample], batch_size: int,
                 pad_id: int, precision: str = "fp32", progress: bool = False) -> list[dict]:
        """Decoded outputs, one {"generated": text} per example, plus every "candidates" text, best first, when
        decode.num_return_sequences > 1."""
        prompts = [f["input_ids"][: f["_prompt_length"]] for f in features]
        outputs = generate(model, self.tokenizer, DecodeRequest(prompts, self.params.decode,
                                                                self.params.max_new_tokens, self.params.stop_strings,
                                                                batch_size, precision, progress))
        texts = [[self.text(candidate.tokens) for candidate in candidates] for candidates in outputs]
        return [{"generated": row[0]} | ({"candidates": row} if len(row) > 1 else {}) for row in texts]

    def text(self, tokens: list[int]) -> str:
        """The text of generated tokens, cut before the first stop string."""
        return cut_at_stop_strings(self.tokenizer.decode(tokens, skip_special_tokens=True), self.params.stop_strings).strip()

    def score(self, predictions: list[dict], examples: list[GenerationExample],
              train_examples: list[GenerationExample]) -> dict:
        hypotheses = [p["generated"] for p in predictions]
        references = [e.target for e in examples]
        metrics: dict = generation_scores(hypotheses, references)
        if self.params.caption_metrics:
            captions = caption_scores(hypotheses, [e.all_references() for e in examples])
            metrics |= {f"coco_{name}": value for name, value in captions.items()}
        metrics["count"] = len(examples)
        metrics["empty_outputs"] = sum(not h for h in hypotheses)
        if all(e.source is not None for e in examples):
            copied = generation_scores([e.source for e in examples], references)
            metrics["copy_source_baseline"] = {k: copied[k] for k in ("bleu", "chrf")}
        metrics["samples"] = [e.to_record() | {"generated": h}
                              for e, h in zip(examples[:SAMPLES_IN_REPORT], hypotheses, strict=False)]
        return metrics

    def from_saved(self, model_dir: Path) -> Generation:
        return Generation(self.params)
