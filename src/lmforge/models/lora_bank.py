"""Rows of different LoRA adapters in one forward pass, at close to the cost of one adapter.

peft's mixed-adapter batches (`adapter_names=`) run, in every LoRA layer, each adapter's rows apart — index, two
small matmuls, scatter — so four adapters cost about four times the LoRA work plus the indexing. A bank holds each
layer's adapters side by side instead: A of every adapter as one (in, adapters × r) matrix and B as one
(adapters × r, out) matrix, so a layer adds `((x @ A) · row mask) @ B · row scale` — two dense matmuls whatever the
mix, the other adapters' columns masked to exact zeros (as vLLM's and LoRAX's batched LoRA kernels, in plain torch).
Plain LoRA on linear layers only; a model with anything else (DoRA, LoRA biases, embeddings, modules_to_save)
gets no bank and decodes through peft's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: peft's adapter name for rows decoding with the base alone (no adapter)
BASE_ROWS = "__base__"
ATTRIBUTE = "_lmforge_lora_bank"


class LoraBank:
    """Every LoRA layer's adapters stacked; `rows(names)` applies each row's adapter for the forward passes run
    in the block."""

    def __init__(self, model: torch.nn.Module, adapters: list[str]) -> None:
        from peft.tuners.lora.layer import Linear as LoraLinear

        self.adapters = list(adapters)
        self.index = {name: i for i, name in enumerate(self.adapters)}
        self.layers: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.rank = max(module.r[name] for module in model.modules() if isinstance(module, LoraLinear)
                        for name in self.adapters if name in module.r)
        self._mask: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None
        for module in model.modules():
            if isinstance(module, LoraLinear):
                self.layers.append(self._stack(module))
        self._hooks = [layer.register_forward_hook(self._add_delta) for layer, *_ in self.layers]
        self._stacks = {id(layer): (a, b, s) for layer, a, b, s in self.layers}

    def _stack(self, module: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(layer, A (in, adapters × r), B (adapters × r, out), scaling (adapters,)) — zeros where an adapter
        leaves the layer alone or has a smaller rank."""
        weight = module.base_layer.weight
        count, rank = len(self.adapters), self.rank
        stacked_a = weight.new_zeros(weight.shape[1], count * rank)
        stacked_b = weight.new_zeros(count * rank, weight.shape[0])
        scaling = weight.new_zeros(count)
        for i, name in enumerate(self.adapters):
            if name not in module.lora_A:
                continue
            r = module.r[name]
            stacked_a[:, i * rank:i * rank + r] = module.lora_A[name].weight.detach().T
            stacked_b[i * rank:i * rank + r] = module.lora_B[name].weight.detach().T
            scaling[i] = module.scaling[name]
        return module, stacked_a, stacked_b, scaling

    @classmethod
    def build(cls, model: torch.nn.Module, adapters: list[str]) -> LoraBank | None:
        """A bank for `model`'s `adapters`, kept on the model (see `bank_of`); None where one is not plain LoRA on
        linear layers."""
        from peft.tuners.lora.layer import Linear as LoraLinear
        from peft.tuners.lora.layer import LoraLayer

        for name in adapters:
            config = model.peft_config[name]
            if getattr(config, "peft_type", None) is None or config.peft_type.value != "LORA" or config.use_dora \
                    or getattr(config, "lora_bias", False) or config.modules_to_save:
                return None
        if any(isinstance(m, LoraLayer) and not isinstance(m, LoraLinear) for m in model.modules()):
            return None
        bank = cls(model, adapters)
        setattr(model, ATTRIBUTE, bank)
        return bank

    @contextmanager
    def rows(self, names: list[str]) -> Iterator[None]:
        """Each row decodes with its adapter (`BASE_ROWS`: none) in the forward passes of the block; the layers'
        own LoRA is off meanwhile."""
        device = self.layers[0][1].device
        index = torch.tensor([self.index.get(name, -1) for name in names], device=device)
        columns = torch.arange(len(self.adapters) * self.rank, device=device) // self.rank
        self._mask = (columns[None, :] == index[:, None]).to(self.layers[0][1].dtype)  # (rows, adapters × r)
        self._rows = index
        for layer, *_ in self.layers:
            layer._disable_adapters = True
        try:
            yield
        finally:
            for layer, *_ in self.layers:
                layer._disable_adapters = False
            self._mask = self._rows = None

    def _add_delta(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self._mask is None:
            return None
        stacked_a, stacked_b, scaling = self._stacks[id(module)]
        x = args[0].to(stacked_a.dtype)
        hidden = (x @ stacked_a) * self._mask.view(-1, *([1] * (x.dim() - 2)), self._mask.shape[1])
        scale = torch.where(self._rows >= 0, scaling[self._rows.clamp(min=0)], 0.0)
        delta = (hidden @ stacked_b) * scale.view(-1, *([1] * (x.dim() - 1)))
        return output + delta.to(output.dtype)


def bank_of(model: torch.nn.Module) -> LoraBank | None:
    """The bank built for `model`, if any."""
    return getattr(model, ATTRIBUTE, None)
