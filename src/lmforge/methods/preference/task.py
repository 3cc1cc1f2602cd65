"""The generation task trained on preferences: it reads preference rows, encodes each prompt with its completions
as the generation task would (chat template, prompt truncation), and its loss is the preference loss.

A pair is one feature: the chosen sequence (`input_ids`, `chosen_labels`: -100 outside the completion) and the
rejected one (`rejected_ids`, `rejected_labels`), each read in its own forward pass. A KTO row holds its
completion and a mismatched one (the previous row's completion after its own prompt) for the KL estimate. Reference
log-probs travel in the features when they were computed ahead (`ref_chosen`, `ref_rejected`, `ref_kl`).

Truncation, as lmforge's generation task (not TRL's keep_start): the prompt keeps its last `data.max_length`
tokens and a completion its first `task.max_target_length`, so the scored tokens are never the ones cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import GenerationExample
from lmforge.data.params import DataParams
from lmforge.data.preference import (
    PreferenceExample,
    check_kto_labels,
    completion_text,
    iter_preferences,
    load_preferences,
    read_preferences,
    save_preferences,
)
from lmforge.data.splits import Splits, assemble_splits, file_params
from lmforge.errors import DataError
from lmforge.methods.preference import losses as L
from lmforge.methods.preference.params import PreferenceParams
from lmforge.tasks.generation import Generation, reply_only_logits_supported

IGNORE = L.IGNORE
#: the reference's log-probs of a batch: (chosen or completion, rejected or KL) sums, or None without a reference
Reference = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor] | None]


class PreferenceTask:
    """Preference training on top of a generation task (`base`, which builds the model and renders prompts)."""

    loads_quantized = True
    supports_peft = True

    def __init__(self, base: Generation, params: PreferenceParams):
        self.base, self.params = base, params
        self.labels: list[str] = []
        self.metric_names = ("preference_accuracy", "reward_accuracy", "reward_margin", "chosen_logps",
                             "rejected_logps") if params.paired else ("preference_accuracy", "reward_margin",
                                                                     "desirable_reward", "undesirable_reward")
        self.default_metric = "preference_accuracy"
        self.reference: Reference | None = None  # set by the method when the reference is computed as training goes
        self.cached: dict[str, tuple[float, float]] = {}  # example `where` → reference log-probs computed ahead
        self.stats: dict[str, float] = {}  # the last training step's numbers (rewards, margins, log-probs)

    @property
    def encoder_decoder(self) -> bool:
        return self.base.encoder_decoder

    @property
    def tokenizer(self):
        return self.base.tokenizer

    # --- data -----------------------------------------------------------------------------------
    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[PreferenceExample]:
        return read_preferences(path, data.format, errors, self.params.paired)

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        expected = "{prompt, chosen, rejected} rows" if self.params.paired else "{prompt, completion, label} rows"
        paired = self.params.paired
        splits = assemble_splits(lambda path, own, errors: read_preferences(path, own.format, errors, paired), data,
                                 seed, expected,
                                 iterate=lambda path, own, errors: iter_preferences(path, own.format, errors, paired))
        if not self.params.paired:
            check_kto_labels(splits.train, file_params(data.train, data)[0])
        return splits

    def example_from_text(self, text: str, where: str) -> PreferenceExample:
        raise DataError(f"{where}: a preference run scores {{prompt, chosen, rejected}} rows, not plain text")

    def save_examples(self, examples: list[PreferenceExample], path: Path) -> None:
        save_preferences(examples, path)

    def load_examples(self, path: Path) -> list[PreferenceExample]:
        return load_preferences(path)

    # --- model ----------------------------------------------------------------------------------
    def adapt_tokenizer(self, tokenizer) -> None:
        self.base.adapt_tokenizer(tokenizer)

    def build_model(self, *args: Any, **kwargs: Any):
        return self.base.build_model(*args, **kwargs)

    def _sequence(self, prompt: Any, completion: Any, where: str, max_length: int) -> tuple[list[int], list[int]]:
        """(ids, labels) of the prompt followed by the completion, encoded by the generation task (earlier
        assistant turns it would learn are unlabelled here: only the completion is scored); an encoder-decoder's
        are (the prompt's ids, the completion's ids)."""
        text = completion_text(completion, where)
        example = GenerationExample(prompt, text, where) if isinstance(prompt, str) else \
            GenerationExample(None, text, where, messages=list(prompt))
        [feature] = self.base.encode([example], self.tokenizer, max_length)
        if self.encoder_decoder:
            return feature["input_ids"], feature["labels"]
        prompt_length = feature["_prompt_length"]
        return feature["input_ids"], [IGNORE] * prompt_length + feature["labels"][prompt_length:]

    def encode(self, examples: list[PreferenceExample], tokenizer, max_length: int) -> list[dict]:
        self.base.tokenizer = tokenizer
        features = []
        for i, example in enumerate(examples):
            ids, labels = self._sequence(example.prompt, example.chosen, example.where, max_length)
            feature = {"input_ids": ids, "attention_mask": [1] * len(ids), "chosen_labels": labels, "_example": i}
            second = "rejected" if example.rejected is not None else "kl"
            # KTO: the previous row's completion after this prompt estimates the KL term (as TRL does)
            completion = example.rejected if example.rejected is not None else \
                examples[i - 1].chosen if len(examples) > 1 else example.chosen
            other, other_labels = self._sequence(example.prompt, completion, example.where, max_length)
            feature[f"{second}_labels"] = other_labels
            if not self.encoder_decoder:  # an encoder-decoder's second sequence shares the prompt's encoder input
                feature |= {f"{second}_ids": other, f"{second}_attention_mask": [1] * len(other)}
            if example.rejected is None:
                feature["desirable"] = int(bool(example.desirable))
            if example.where in self.cached:
                feature["ref_chosen"], feature["ref_other"] = self.cached[example.where]
            features.append(feature)
        return features

    # --- the loss -------------------------------------------------------------------------------
    def log_probs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first logps, second logps, first lengths, second lengths, first sequences' mean token NLL) of the
        batch's two sequences per row — chosen and rejected, or a KTO row's completion and its mismatched one.
        A decoder-only model reads each half in its own pass: the same work as one pass over both, but every
        layer's temporaries are half as large, and the CPU heap they fragment with them (LoRA-DPO's peak RSS
        in bench/preference.py fell by a third); an encoder-decoder reads the prompt with each of its two
        completions as decoder targets, in one pass."""
        second = "rejected" if "rejected_labels" in batch else "kl"
        first_ids, second_ids = batch["input_ids"], batch.get(f"{second}_ids", batch["input_ids"])
        if not self.encoder_decoder:
            first, first_len = completion_log_probs(model, first_ids, batch["attention_mask"], batch["chosen_labels"])
            other, other_len = completion_log_probs(
                model, second_ids, batch.get(f"{second}_attention_mask", batch["attention_mask"]),
                batch[f"{second}_labels"])
            return first, other, first_len, other_len, -first.sum() / first_len.sum().clamp(min=1)
        width = max(first_ids.shape[1], second_ids.shape[1])

        def widen(tensor: torch.Tensor, fill: int, to: int = width) -> torch.Tensor:
            return torch.nn.functional.pad(tensor, (0, to - tensor.shape[1]), value=fill)
        ids = torch.cat([widen(first_ids, 0), widen(second_ids, 0)])
        mask = torch.cat([widen(batch["attention_mask"], 0),
                          widen(batch.get(f"{second}_attention_mask", batch["attention_mask"]), 0)])
        label_width = max(batch["chosen_labels"].shape[1], batch[f"{second}_labels"].shape[1])
        labels = torch.cat([widen(batch["chosen_labels"], IGNORE, label_width),
                            widen(batch[f"{second}_labels"], IGNORE, label_width)])
        logits = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).logits
        logps, lengths = L.sequence_logps(logits, labels, shifted=False)
        rows = first_ids.shape[0]
        nll = -logps[:rows].sum() / lengths[:rows].sum().clamp(min=1)
        return logps[:rows], logps[rows:], lengths[:rows], lengths[rows:], nll

    def reference_log_probs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                            ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The reference's sums for the batch's two sequences: computed ahead (in the batch), or now."""
        if "ref_chosen" in batch:
            return batch["ref_chosen"].float(), batch["ref_other"].float()
        if self.reference is None:
            return None
        return self.reference(model, batch)

    def preference_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the mean loss, per-row numbers: rewards and log-probs) of one batch."""
        p, beta = self.params, self.params.strength
        first, second, first_len, second_len, nll = self.log_probs(model, batch)
        reference = self.reference_log_probs(model, batch) if p.uses_reference else None
        if p.uses_reference and reference is None:
            raise RuntimeError("tuning.preference: no reference log-probs for this batch")
        rows: dict[str, torch.Tensor] = {}
        if p.method == "kto":
            kl = L.kto_kl(second, reference[1])
            losses, rewards = L.kto(first, reference[0], batch["desirable"].bool(), kl, beta, p.desirable_weight,
                                    p.undesirable_weight)
            rows = {"rewards": rewards, "logps": first.detach(), "desirable": batch["desirable"].bool(),
                    "kl": kl.expand_as(rewards)}
            return losses.mean(), rows
        if p.method == "dpo":
            losses, chosen_r, rejected_r = L.dpo(first, second, *reference, beta, p.label_smoothing)
        elif p.method == "ipo":
            losses, chosen_r, rejected_r = L.ipo(first, second, *reference, first_len, second_len, beta)
        elif p.method == "simpo":
            losses, chosen_r, rejected_r = L.simpo(first, second, first_len, second_len, beta, p.gamma,
                                                   p.label_smoothing)
        else:
            losses, chosen_r, rejected_r = L.orpo(first, second, first_len, second_len, nll, beta)
        rows = {"chosen_rewards": chosen_r, "rejected_rewards": rejected_r, "chosen_logps": first.detach(),
                "rejected_logps": second.detach(), "chosen_lengths": first_len, "rejected_lengths": second_len}
        return losses.mean(), rows

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        loss, rows = self.preference_loss(model, batch)
        self.stats = step_stats(rows)
        return loss, None

    # --- outputs --------------------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per row: (chosen reward, rejected reward, chosen logps, rejected logps, chosen length, rejected
        length) — for KTO rows (reward, desirable, logps, 0, length, 0)."""
        with torch.no_grad():
            _, rows = self.preference_loss(model, batch)
        if "rewards" in rows:
            zeros = torch.zeros_like(rows["rewards"])
            return torch.stack([rows["rewards"], rows["desirable"].float(), rows["logps"], zeros, zeros, zeros], 1)
        return torch.stack([rows["chosen_rewards"], rows["rejected_rewards"], rows["chosen_logps"],
                            rows["rejected_logps"], rows["chosen_lengths"].float(), rows["rejected_lengths"].float()], 1)

    def decode(self, outputs: list[torch.Tensor], features: list[dict], examples: list[PreferenceExample]) -> list[dict]:
        if not self.params.paired:
            return [{"reward": float(o[0]), "desirable": bool(o[1]), "logps": float(o[2])} for o in outputs]
        return [{"chosen_reward": float(o[0]), "rejected_reward": float(o[1]), "chosen_logps": float(o[2]),
                 "rejected_logps": float(o[3]), "chosen_tokens": int(o[4]), "rejected_tokens": int(o[5])}
                for o in outputs]

    def score(self, predictions: list[dict], examples: list[PreferenceExample], train_examples: list) -> dict:
        return preference_scores(predictions)

    def from_saved(self, model_dir: Path) -> PreferenceTask:
        return PreferenceTask(self.base.from_saved(model_dir), self.params)


def completion_log_probs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                         labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the labelled tokens' log-probabilities, their count) per row. Where the logits are a plain linear
    map of the last hidden state, the vocabulary projection and softmax run on the completion tokens only (as
    the generation task's reply-only loss does): a 49k-word vocabulary over every prompt position otherwise
    costs gigabytes."""
    if not reply_only_logits_supported(model):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        return L.sequence_logps(logits[:, -labels.shape[1]:], labels)  # prompt tuning prepends virtual positions
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    hidden = inner.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    counted = targets != IGNORE
    logits = inner.get_output_embeddings()(hidden[:, :-1][counted]).float()  # (counted tokens, vocab)
    token_logps = logits.log_softmax(-1).gather(1, targets[counted].unsqueeze(1)).squeeze(1)
    rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1).expand_as(targets)[counted]
    sums = torch.zeros(ids.shape[0], dtype=token_logps.dtype, device=ids.device).index_add(0, rows, token_logps)
    return sums, counted.sum(-1)


def preference_scores(predictions: list[dict]) -> dict[str, float]:
    """Held-out numbers: preference accuracy (the model gives the chosen completion more log-probability per
    token than the rejected one: reference-free, comparable before and after training), reward accuracy and
    margin (the method's implicit rewards, as TRL logs them), mean log-probs. KTO rows: the mean reward of
    desirable and undesirable completions, their gap, and how often a desirable one out-rewards an undesirable."""
    if not predictions:
        return {}
    if "reward" in predictions[0]:
        good = [p["reward"] for p in predictions if p["desirable"]]
        bad = [p["reward"] for p in predictions if not p["desirable"]]
        mean = lambda values: sum(values) / len(values) if values else math.nan  # noqa: E731
        wins = sum(g > b for g in good for b in bad) / (len(good) * len(bad)) if good and bad else math.nan
        return {"preference_accuracy": wins, "reward_margin": mean(good) - mean(bad), "desirable_reward": mean(good),
                "undesirable_reward": mean(bad)}
    count = len(predictions)
    per_token = [(p["chosen_logps"] / max(p["chosen_tokens"], 1), p["rejected_logps"] / max(p["rejected_tokens"], 1))
                 for p in predictions]
    return {"preference_accuracy": sum(c > r for c, r in per_token) / count,
            "reward_accuracy": sum(p["chosen_reward"] > p["rejected_reward"] for p in predictions) / count,
            "reward_margin": sum(p["chosen_reward"] - p["rejected_reward"] for p in predictions) / count,
            "chosen_logps": sum(p["chosen_logps"] for p in predictions) / count,
            "rejected_logps": sum(p["rejected_logps"] for p in predictions) / count}


def step_stats(rows: dict[str, torch.Tensor]) -> dict[str, float]:
    """A training step's logged numbers, named as TRL logs them."""
    if "rewards" in rows:
        desirable = rows["desirable"]
        stats = {"kl": float(rows["kl"][0]) if len(rows["kl"]) else 0.0}
        if desirable.any():
            stats["rewards/chosen"] = float(rows["rewards"][desirable].mean())
            stats["logps/chosen"] = float(rows["logps"][desirable].mean())
        if (~desirable).any():
            stats["rewards/rejected"] = float(rows["rewards"][~desirable].mean())
            stats["logps/rejected"] = float(rows["logps"][~desirable].mean())
        return stats
    chosen, rejected = rows["chosen_rewards"], rows["rejected_rewards"]
    return {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
            "rewards/accuracies": float((chosen > rejected).float().mean()),
            "rewards/margins": float((chosen - rejected).mean()),
            "logps/chosen": float(rows["chosen_logps"].mean()), "logps/rejected": float(rows["rejected_logps"].mean())}
