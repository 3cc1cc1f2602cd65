"""The generation task trained and decoded through the strategy network.

Training: every batch holds one task's rows (`TaskSampledOrder`, temperature-based task sampling); the
batch's expert is switched on for the language-model loss, and the router learns, from each prompt's hidden
state, which expert the row belongs to (cross-entropy, `router_weight`). Decoding: the router alone picks
each input's expert — no task id — and the inputs are decoded expert by expert. The report adds each task's
scores, the router's expert usage per task and its routing accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel

from lmforge.data.batching import TaskSampledOrder
from lmforge.data.generation import GenerationExample
from lmforge.data.params import DataParams
from lmforge.data.splits import Splits
from lmforge.errors import ConfigError, DataError
from lmforge.methods.strategy_network.experts import prompt_features, router_of, saved_spec
from lmforge.methods.strategy_network.params import StrategyNetworkParams
from lmforge.metrics.generation import generation_scores
from lmforge.models.precision import autocast_for
from lmforge.tasks.generation import IGNORE, Generation, GenerationParams

TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
TASK_SCORES = ("bleu", "chrf", "exact_match")


def prompt_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The attended positions before each row's first learned token (its prompt)."""
    before_reply = (batch["labels"] != IGNORE).long().cumsum(1) == 0
    return batch["attention_mask"].bool() & before_reply


class StrategyNetworkTask(Generation):
    """Generation over rows from several tasks (their `task` field), one expert per task, routed per input."""

    def __init__(self, params: GenerationParams, network: StrategyNetworkParams | None = None,
                 experts: list[str] | None = None):
        super().__init__(params)
        self.network = network or StrategyNetworkParams()
        self.experts: list[str] = list(experts or [])
        self.metric_names = (*self.metric_names, "routing_accuracy")
        self.step_stats: dict[str, float] = {}
        self.memory: tuple[torch.Tensor, torch.Tensor] | None = None  # recent (prompt features, task ids)

    # --- data -----------------------------------------------------------------------------------
    def read_splits(self, data: DataParams, seed: int) -> Splits:
        splits = super().read_splits(data, seed)
        unnamed = next((e for e in splits.train if e.task is None), None)
        if unnamed is not None:
            raise DataError(f"{unnamed.where}: tuning.strategy_network needs a '{self.params.task_column}' field on "
                            f"every training row (which task it belongs to)")
        self.experts = sorted({e.task for e in splits.train})
        bad = next((name for name in self.experts if not TASK_NAME.match(name)), None)
        if bad is not None:
            raise DataError(f"task name {bad!r}: use letters, digits, '-' and '_' only (it names an expert)")
        if len(self.experts) < 2:
            raise DataError(f"tuning.strategy_network needs rows from at least 2 tasks; the training rows are all "
                            f"{self.experts[0]!r}")
        for example in splits.validation + splits.test:
            if example.task is not None and example.task not in self.experts:
                raise DataError(f"{example.where}: task {example.task!r} has no training rows (tasks: "
                                f"{', '.join(self.experts)})")
        return splits

    def encode(self, examples: list[GenerationExample], tokenizer, max_length: int) -> list[dict]:
        features = super().encode(examples, tokenizer, max_length)
        for feature, example in zip(features, examples, strict=True):
            if example.task is not None and "labels" in feature:
                feature["task_id"] = self.experts.index(example.task)
        return features

    def batch_order(self, features: list[dict], batch_size: int, seed: int, process_index: int,
                    num_processes: int) -> TaskSampledOrder:
        return TaskSampledOrder([f["task_id"] for f in features], batch_size, seed, self.network.temperature,
                                process_index, num_processes)

    # --- training -------------------------------------------------------------------------------
    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each task's rows through its expert (LM loss, weighted by rows) + router_weight × the router's loss."""
        batch = dict(batch)
        task_ids = batch.pop("task_id")
        lm_loss, logits = torch.zeros((), device=task_ids.device), None
        for task_id in task_ids.unique().tolist():
            rows = task_ids == task_id
            model.set_adapter(self.experts[task_id])
            part, logits = super().loss(model, {k: v[rows] for k, v in batch.items()})
            lm_loss = lm_loss + part * rows.float().mean()
        prompts = prompt_mask(batch)
        width = int(prompts.sum(1).max())  # right-padded rows: every prompt lies within the first `width` positions
        features = prompt_features(model, batch["input_ids"][:, :width], batch["attention_mask"][:, :width],
                                   prompts[:, :width])
        remembered, remembered_ids = self.remember(features, task_ids)
        router_logits = router_of(model)(remembered)
        router_loss = torch.nn.functional.cross_entropy(router_logits, remembered_ids)
        batch_logits = router_logits[-len(task_ids):]
        self.step_stats = {"router_loss": float(router_loss.detach()),
                           "router_accuracy": float((batch_logits.argmax(-1) == task_ids).float().mean())}
        return lm_loss + self.network.router_weight * router_loss, logits

    def remember(self, features: torch.Tensor, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's rows followed by this batch's (the router's training set for this step); keeps the last
        `router_memory` rows."""
        if self.memory is not None:
            features = torch.cat([self.memory[0], features])
            task_ids = torch.cat([self.memory[1], task_ids])
        keep = self.network.router_memory
        self.memory = (features[-keep:], task_ids[-keep:]) if keep else None
        return features, task_ids

    # --- outputs --------------------------------------------------------------------------------
    def route(self, model: PreTrainedModel, prompts: list[list[int]], batch_size: int, pad_id: int,
              precision: str = "fp32") -> torch.Tensor:
        """(prompts, experts) router probabilities."""
        router = router_of(model)
        device = next(router.parameters()).device
        found = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            longest = max(len(p) for p in chunk)
            ids = torch.tensor([p + [pad_id] * (longest - len(p)) for p in chunk], device=device)
            mask = torch.tensor([[1] * len(p) + [0] * (longest - len(p)) for p in chunk], device=device)
            with torch.no_grad(), autocast_for(precision, device):
                found.append(router(prompt_features(model, ids, mask)).softmax(-1))
        return torch.cat(found).float().cpu()

    def decode_by_expert(self, model: PreTrainedModel, prompts: list[list[int]], batch_size: int, pad_id: int,
                         precision: str, decode: Callable[[list[int]], list]) -> tuple[list, list[tuple[str, float]]]:
        """`decode(rows)` for the rows (prompt indices) each expert gets, that expert switched on; (each prompt's
        output, each prompt's (expert, router probability))."""
        probabilities = self.route(model, prompts, batch_size, pad_id, precision)
        picks = probabilities.argmax(-1).tolist()
        outputs: list = [None] * len(prompts)
        active = model.active_adapter
        try:
            for expert in sorted(set(picks)):
                rows = [i for i, pick in enumerate(picks) if pick == expert]
                model.set_adapter(self.experts[expert])
                for row, output in zip(rows, decode(rows), strict=True):
                    outputs[row] = output
        finally:
            model.set_adapter(active)
        return outputs, [(self.experts[p], float(probabilities[i, p])) for i, p in enumerate(picks)]

    def expert_router(self, model: PreTrainedModel, pad_id: int, precision: str) -> tuple[Callable, Callable]:
        """(route(prompts) -> each prompt's expert by the router's pick, switch(expert) turning it on)."""
        def route(prompts: list[list[int]]) -> list[str]:
            picks = self.route(model, prompts, len(prompts), pad_id, precision).argmax(-1)
            return [self.experts[pick] for pick in picks.tolist()]
        return route, model.set_adapter

    def generate(self, model: PreTrainedModel, features: list[dict], examples: list[GenerationExample], batch_size: int,
                 pad_id: int, precision: str = "fp32", progress: bool = False) -> list[dict]:
        """Each input decoded by the expert its router picks; outputs name the expert and its probability."""
        def decode(rows: list[int]) -> list[dict]:
            return Generation.generate(self, model, [features[i] for i in rows], [examples[i] for i in rows],
                                       batch_size, pad_id, precision, progress)

        prompts = [f["input_ids"][: f["_prompt_length"]] for f in features]
        outputs, routes = self.decode_by_expert(model, prompts, batch_size, pad_id, precision, decode)
        return [output | {"expert": expert, "expert_probability": round(p, 4)}
                for output, (expert, p) in zip(outputs, routes, strict=True)]

    def score(self, predictions: list[dict], examples: list[GenerationExample],
              train_examples: list[GenerationExample]) -> dict:
        """The generation scores over all rows, plus per task: BLEU, chrF, exact match, rows; the router's expert
        usage per task and the share of rows routed to their own task's expert."""
        metrics = super().score(predictions, examples, train_examples)
        tasks: dict[str, dict] = {}
        usage: dict[str, dict[str, int]] = {}
        for name in sorted({e.task for e in examples if e.task is not None}):
            rows = [i for i, e in enumerate(examples) if e.task == name]
            scores = generation_scores([predictions[i]["generated"] for i in rows], [examples[i].target for i in rows])
            tasks[name] = {key: scores[key] for key in TASK_SCORES} | {"count": len(rows)}
            usage[name] = {}
            for i in rows:
                expert = predictions[i].get("expert", "?")
                usage[name][expert] = usage[name].get(expert, 0) + 1
        routed = [p.get("expert") == e.task for p, e in zip(predictions, examples, strict=True) if e.task is not None]
        metrics |= {"tasks": tasks, "router": usage}
        if routed:
            metrics["routing_accuracy"] = 100.0 * sum(routed) / len(routed)
        return metrics

    def from_saved(self, model_dir: Path) -> StrategyNetworkTask:
        return StrategyNetworkTask(self.params, self.network, saved_spec(model_dir)["experts"])


def with_strategy_network(task, params: StrategyNetworkParams | None):
    """`task` trained as a strategy network per `params` (unchanged when None)."""
    if params is None:
        return task
    if type(task) is not Generation:
        raise ConfigError("tuning.strategy_network trains generation tasks in text-to-text form (task: generation)")
    return StrategyNetworkTask(task.params, params)
