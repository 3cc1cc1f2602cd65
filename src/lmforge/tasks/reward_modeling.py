"""Reward modeling: a scalar head scores a (prompt, completion) pair, trained on preference pairs with the
Bradley–Terry loss −log σ(r_chosen − r_rejected) (as TRL's RewardTrainer) and evaluated by pairwise accuracy.

The head is transformers' sequence classification with one output (`num_labels=1`), so the saved model is a
plain Hugging Face reward model (TRL, vLLM and `pipeline` read it). A pair is rendered as the model reads it:
a conversation (a prompt given as messages) through the tokenizer's chat template where it has one, otherwise
the prompt and the completion as a text pair (BERT: `[CLS] prompt [SEP] completion [SEP]`); a rendering longer
than `data.max_length` keeps its end — the completion — and loses the start of the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.params import DataParams
from lmforge.data.preference import (
    PreferenceExample,
    Text,
    completion_text,
    load_preferences,
    read_completions,
    read_preferences,
    save_preferences,
)
from lmforge.data.splits import Splits, assemble_splits
from lmforge.errors import DataError
from lmforge.models.labels import config_with_labels
from lmforge.models.quantization import pretrained_kwargs

REWARD_LABEL = "reward"


class RewardModelingParams(BaseModel):
    model_config = STRICT

    name: Literal["reward-modeling"] = "reward-modeling"
    center_rewards: float = Field(0.0, ge=0.0, description="Weight of the penalty on (r_chosen + r_rejected)², which "
                                                           "keeps rewards centred on 0 (TRL's "
                                                           "center_rewards_coefficient; 0 = off).")


def render_pair(tokenizer: PreTrainedTokenizerBase, prompt: Text, completion: str, max_length: int) -> dict[str, list[int]]:
    """The model inputs of one (prompt, completion): a conversation through the chat template, else a text pair;
    at most `max_length` tokens, the end kept."""
    if not isinstance(prompt, str) and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(prompt) + [{"role": "assistant", "content": completion}],
                                             tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}
    prompt_text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    encoded = tokenizer(prompt_text, completion)
    if len(encoded["input_ids"]) <= max_length:
        return dict(encoded)
    prompt_room = max_length - len(tokenizer(completion)["input_ids"])  # the completion with its special tokens
    if prompt_room >= 8:  # keep the prompt's last tokens
        kept = tokenizer.convert_tokens_to_string(tokenizer.tokenize(prompt_text)[-(prompt_room - 1):])
        encoded = tokenizer(kept, completion, truncation="only_first", max_length=max_length)
        if len(encoded["input_ids"]) <= max_length:
            return dict(encoded)
    return dict(tokenizer(prompt_text, completion, truncation="longest_first", max_length=max_length))


class RewardModeling:
    """A scalar reward head on any HF encoder or decoder, trained on {prompt, chosen, rejected} pairs."""

    default_metric = "pairwise_accuracy"
    metric_names = ("pairwise_accuracy", "reward_margin")
    loads_quantized = True
    supports_peft = True  # the head trains and is saved as one of the adapter's modules_to_save

    def __init__(self, params: RewardModelingParams):
        self.params = params
        self.labels: list[str] = []

    # --- data -----------------------------------------------------------------------------------
    def read_splits(self, data: DataParams, seed: int) -> Splits:
        return assemble_splits(lambda path, own, errors: read_preferences(path, own.format, errors, paired=True),
                               data, seed, "{prompt, chosen, rejected} rows")

    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[PreferenceExample]:
        if labelled:
            return read_preferences(path, data.format, errors, paired=True)
        return read_completions(path, data.format, errors)

    def example_from_text(self, text: str, where: str) -> PreferenceExample:
        raise DataError(f"{where}: a reward model scores {{prompt, completion}} rows; give them as a .jsonl file")

    def save_examples(self, examples: list[PreferenceExample], path: Path) -> None:
        save_preferences(examples, path)

    def load_examples(self, path: Path) -> list[PreferenceExample]:
        return load_preferences(path)

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, path: str, local_files_only: bool, trust_remote_code: bool,
                    dtype: torch.dtype | None = None, quantization: dict[str, Any] | None = None) -> PreTrainedModel:
        config = config_with_labels(path, [REWARD_LABEL], local_files_only, trust_remote_code)
        config.problem_type = "regression"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
            **pretrained_kwargs(dtype, quantization))
        if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
            model.config.pad_token_id = model.config.eos_token_id  # decoders score the last non-pad token
        return model

    def encode(self, examples: list[PreferenceExample], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[dict]:
        features = []
        for i, example in enumerate(examples):
            feature = render_pair(tokenizer, example.prompt, completion_text(example.chosen, example.where), max_length)
            if example.rejected is not None:
                rejected = render_pair(tokenizer, example.prompt, completion_text(example.rejected, example.where),
                                       max_length)
                feature |= {f"rejected_{key}": value for key, value in rejected.items()}
            features.append(feature | {"_example": i})
        return features

    # --- the loss -------------------------------------------------------------------------------
    def forward(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per row: (chosen reward, rejected reward) for pairs, (reward,) for single completions."""
        if "rejected_input_ids" not in batch:
            return rewards_of(model, batch).unsqueeze(1)
        rows = batch["input_ids"].shape[0]
        width = max(batch["input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
        both = {}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in batch:
                first, other = batch[key], batch[f"rejected_{key}"]
                both[key] = torch.cat([F.pad(first, (0, width - first.shape[1])),
                                       F.pad(other, (0, width - other.shape[1]))])
        scores = rewards_of(model, both)  # one forward pass over both completions
        return torch.stack([scores[:rows], scores[rows:]], 1)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.forward(model, batch)
        chosen, rejected = scores[:, 0], scores[:, 1]
        loss = bradley_terry_loss(chosen, rejected, self.params.center_rewards)
        return loss, scores

    # --- outputs --------------------------------------------------------------------------------
    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[PreferenceExample]) -> list[dict]:
        if outputs and outputs[0].numel() == 1:
            return [{"reward": float(o[0])} for o in outputs]
        return [{"chosen_reward": float(o[0]), "rejected_reward": float(o[1])} for o in outputs]

    def score(self, predictions: list[dict], examples: list[PreferenceExample], train_examples: list) -> dict:
        return pairwise_scores(predictions, examples)

    def from_saved(self, model_dir: Path) -> RewardModeling:
        return RewardModeling(self.params)


def rewards_of(model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reward of each row (fp32). Padding is rewritten to the model's pad id: decoders score the last
    token that is not one, and every key but input_ids is padded with 0."""
    pad_id = model.config.pad_token_id
    ids = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, pad_id if pad_id is not None else 0)
    return model(**(inputs | {"input_ids": ids})).logits[:, 0].float()


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, center: float = 0.0) -> torch.Tensor:
    """−log σ(r_chosen − r_rejected), averaged; plus `center` · mean((r_chosen + r_rejected)²) (TRL's centring)."""
    loss = -F.logsigmoid(chosen - rejected).mean()
    if center:
        loss = loss + center * ((chosen + rejected) ** 2).mean()
    return loss


def pairwise_scores(predictions: list[dict], examples: list[PreferenceExample]) -> dict[str, Any]:
    """Pairwise accuracy (the chosen completion out-rewarded the rejected one), the mean margin, and as a
    baseline the accuracy of preferring the longer completion."""
    if not predictions:
        return {}
    count = len(predictions)
    longer = sum(len(completion_text(e.chosen, e.where)) > len(completion_text(e.rejected, e.where))
                 for e in examples)
    return {"pairwise_accuracy": sum(p["chosen_reward"] > p["rejected_reward"] for p in predictions) / count,
            "reward_margin": sum(p["chosen_reward"] - p["rejected_reward"] for p in predictions) / count,
            "mean_chosen_reward": sum(p["chosen_reward"] for p in predictions) / count,
            "mean_rejected_reward": sum(p["rejected_reward"] for p in predictions) / count,
            "count": count, "longer_completion_baseline": {"pairwise_accuracy": longer / count}}
