"""Length-grouped, seeded batch order and dynamic padding.

Batches are drawn from a permutation seeded by (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted one would; under `accelerate launch` each process takes every n-th batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from lmforge.data.arrow import take_features


class BatchOrder:
    """Yields lists of example indices; `set_epoch(epoch, skip)` picks the order and resumes inside it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True,
                 group_by_length: bool = True, process_index: int = 0, num_processes: int = 1):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.process_index = process_index
        self.num_processes = num_processes
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[list[int]]:
        """Every batch of the current epoch for this process, before skipping."""
        count = len(self.lengths)
        if not self.shuffle:
            order = list(range(count))
            if self.group_by_length:
                order = np.argsort(-self.lengths, kind="stable").tolist()
            batches = [order[i:i + self.batch_size] for i in range(0, count, self.batch_size)]
        else:
            generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            permutation = torch.randperm(count, generator=generator).numpy()
            if self.group_by_length:
                # Sort within mega-batches of 50 batches (as HF's LengthGroupedSampler), then shuffle batches.
                mega = self.batch_size * 50
                permutation = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                              for chunk in np.split(permutation, range(mega, count, mega))]) \
                    if count else permutation
            order = permutation.tolist()
            batches = [order[i:i + self.batch_size] for i in range(0, count, self.batch_size)]
            if self.group_by_length:
                perm = torch.randperm(len(batches), generator=generator).tolist()
                batches = [batches[i] for i in perm]
        usable = len(batches) - len(batches) % self.num_processes if self.num_processes > 1 else len(batches)
        return batches[self.process_index:usable:self.num_processes]

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.skip:]

    def feature_batches(self, features: Sequence[dict]) -> Iterator[list[dict]]:
        """The features of each batch left in the epoch (read lazily from a table when they live in one)."""
        for indices in self:
            yield take_features(features, indices)


class TaskSampledOrder(BatchOrder):
    """Multi-task batches, each from one task: the task of every batch is drawn with probability ∝ n_t^(1/T)
    (n_t: the task's examples; T = 1 proportional, large T uniform), small tasks cycling through fresh
    shuffles. An epoch has as many batches as one pass over the data would; seeded by (seed, epoch) as
    BatchOrder, so resuming works the same."""

    def __init__(self, tasks: Sequence[int], batch_size: int, seed: int, temperature: float = 1.0,
                 process_index: int = 0, num_processes: int = 1):
        super().__init__([1] * len(tasks), batch_size, seed, process_index=process_index, num_processes=num_processes)
        self.tasks = list(tasks)
        self.temperature = temperature

    def batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        members: dict[int, list[int]] = {}
        for index, task in enumerate(self.tasks):
            members.setdefault(task, []).append(index)
        names = sorted(members)
        queues: dict[int, list[list[int]]] = {task: [] for task in names}

        def next_batch(task: int) -> list[int]:
            if not queues[task]:
                order = [members[task][i] for i in torch.randperm(len(members[task]), generator=generator).tolist()]
                queues[task] = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            return queues[task].pop(0)

        total = sum(-(-len(members[task]) // self.batch_size) for task in names)
        weights = torch.tensor([len(members[task]) ** (1 / self.temperature) for task in names], dtype=torch.float64)
        draws = torch.multinomial(weights, total, replacement=True, generator=generator).tolist()
        batches = [next_batch(names[draw]) for draw in draws]
        usable = len(batches) - len(batches) % self.num_processes if self.num_processes > 1 else len(batches)
        return batches[self.process_index:usable:self.num_processes]


PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "labels": -100, "chosen_labels": -100, "rejected_labels": -100,
              "kl_labels": -100}


def pad_batch(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad list-valued keys to the longest in the batch (input_ids with `pad_id`, masks with 0, token
    labels with -100); scalars are stacked; keys starting with "_" are bookkeeping and left out."""
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        if key.startswith("_"):
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list):
            longest = max(len(v) for v in values)
            fill = pad_id if key == "input_ids" else PAD_VALUES.get(key, 0)
            values = [v + [fill] * (longest - len(v)) for v in values]
        batch[key] = torch.tensor(values)
    return batch
