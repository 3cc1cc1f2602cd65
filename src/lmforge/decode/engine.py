"""The one place that steps a model while decoding: prefill, step, select rows, roll back.

`Engine` owns the KV cache, the attention mask and the positions of a batch of rows, for HF causal
LMs (prompts left-padded, so every row's next token sits in the last column) and encoder-decoder
models (the encoder runs once; rows then step the decoder). Strategies call `prefill`, `step`,
`select` and `crop` and never touch the cache. The model inputs mirror HF `generate` (same
positions, same mask, no mask when nothing is padded, logits only for the positions asked for), so
the same weights give the same logits.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any

import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel, StaticCache
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import BaseModelOutput

from lmforge.decode.kernels import compiled_forward, weight_first_linear
from lmforge.models.mixed_lora import stacked_lora
from lmforge.models.pooling import masked_mean


def pad_id_of(tokenizer: Any) -> int:
    """The token that pads prompts: the tokenizer's pad token, else its EOS."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


#: peft's adapter name for rows of a mixed-adapter batch that decode with the base model alone
BASE_ROWS = "__base__"


def longest_first(prompts: list[list[int]]) -> list[int]:
    """Prompt indices, longest prompt first: batches of similar lengths waste little on padding."""
    return sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))


def pad_prompts(prompts: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (rows, longest prompt): prompts padded on the left (decoder-only) or right."""
    longest = max(len(p) for p in prompts)
    ids, mask = [], []
    for prompt in prompts:
        fill = [pad_id] * (longest - len(prompt))
        ids.append(fill + prompt if left else prompt + fill)
        mask.append([0] * len(fill) + [1] * len(prompt) if left else [1] * len(prompt) + [0] * len(fill))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def _pad_left(tensor: torch.Tensor, length: int, dim: int, value: int = 0) -> torch.Tensor:
    """`tensor` padded with `value` at the start of `dim` to `length`."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_full(shape, value), tensor], dim=dim)


def decoder_start_id(model: PreTrainedModel) -> int:
    """The token an encoder-decoder model's decoder starts from."""
    for config in (model.generation_config, model.config):
        for name in ("decoder_start_token_id", "bos_token_id"):
            if getattr(config, name, None) is not None:
                return int(getattr(config, name))
    raise ValueError(f"{type(model).__name__} names no decoder_start_token_id in its config")


class Engine:
    """A batch of rows being decoded by `model`.

    >>> engine = Engine(model, [[5, 6, 7], [8]], pad_id=0)
    >>> logits = engine.prefill()                 # (rows, vocab), float32
    >>> logits = engine.step(logits.argmax(-1)[:, None])[:, -1]
    """

    def __init__(self, model: PreTrainedModel, prompts: list[list[int]], pad_id: int,
                 prompt_embeds: torch.Tensor | None = None, static_length: int | None = None, compiled: bool = False,
                 adapter_names: list[str] | None = None):
        """`prompt_embeds` (rows, k, hidden), decoder-only models: a soft prompt read before each row's tokens
        (e.g. an image projected into the LM's input space); it takes k placeholder positions.
        `adapter_names`, a peft model with several adapters: each row's adapter (`BASE_ROWS` for none), so rows of
        different adapters decode in one batch (LoRA stacked, models/mixed_lora.py; peft's mixed-adapter batches
        for other adapters).
        `static_length`: a KV cache allocated once for that many positions (decoder-only; no `crop` or `merge`),
        with a mask of fixed width; `compiled` then runs each step through `torch.compile`."""
        if prompt_embeds is not None:
            if model.config.is_encoder_decoder or prompt_embeds.shape[0] != len(prompts):
                raise ValueError("prompt_embeds needs a decoder-only model and one (k, hidden) soft prompt per prompt")
            prompts = [[pad_id] * prompt_embeds.shape[1] + list(p) for p in prompts]
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.model, self.pad_id = model, pad_id
        self.device = next(model.parameters()).device
        self.encoder_decoder = bool(model.config.is_encoder_decoder)
        ids, mask = pad_prompts(prompts, pad_id, left=not self.encoder_decoder)
        self.prompt_ids, self.prompt_mask = ids.to(self.device), mask.to(self.device)
        text_config = model.config.get_text_config(decoder=True)
        self.static = static_length is not None
        if self.static and (self.encoder_decoder or static_length < ids.shape[1]):
            raise ValueError("a static cache needs a decoder-only model and room for the prompt")
        self.cache = StaticCache(config=text_config, max_cache_len=static_length) if self.static else \
            DynamicCache(config=text_config)
        self._compiled_step = compiled_forward(model) if compiled else None
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        if self.encoder_decoder:
            self.cache = EncoderDecoderCache(self.cache, DynamicCache(config=text_config))
            self.encoder_outputs = None
            self.mask = None
            self.next_position = None
        else:
            self.mask = None if bool(mask.all()) else self.prompt_mask  # HF drops an all-ones mask: same kernels
            if self.static and self.mask is not None:  # fixed width: later positions are hidden by causality
                self.mask = _pad_left(self.mask.flip(1), static_length, 1, 1).flip(1)
            positions = self.prompt_mask.cumsum(-1) - 1
            self.positions = positions.masked_fill(self.prompt_mask == 0, 0)
            self.next_position = self.positions[:, -1] + 1  # (rows,)
        self.prompt_embeds = None if prompt_embeds is None else prompt_embeds.to(self.device)
        if adapter_names is not None and len(adapter_names) != len(prompts):
            raise ValueError("adapter_names: give one adapter name per prompt")
        self.adapter_names = None if adapter_names is None else list(adapter_names)
        self.rows = len(prompts)
        self.length = 0  # tokens in the cache (decoder side)
        self.keep_hidden = False  # set before prefill to get `last_hidden` after each forward
        self.last_hidden: torch.Tensor | None = None  # (rows, tokens run, hidden): the top layer's states
        self._pending_logits: torch.Tensor | None = None  # a fork's prefill logits, returned by its `prefill`

    @property
    def prompt_length(self) -> int:
        """Tokens before the first generated one in the decoder's sequence (padded prompt, or the start token)."""
        return 1 if self.encoder_decoder else self.prompt_ids.shape[1]

    def prompts(self) -> list[list[int]]:
        """Each row's prompt without padding."""
        return [ids[mask.bool()].tolist() for ids, mask in zip(self.prompt_ids, self.prompt_mask, strict=True)]

    def first_tokens(self) -> torch.Tensor:
        """(rows, prompt_length): what the decoder has seen before generating: the padded prompt or the start token."""
        if self.encoder_decoder:
            return torch.full((self.rows, 1), decoder_start_id(self.model), dtype=torch.long, device=self.device)
        return self.prompt_ids

    def _forward(self, tokens: torch.Tensor, keep: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        kwargs: dict = {"past_key_values": self.cache, "use_cache": True}
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        if self.encoder_decoder:
            if self.encoder_outputs is None:
                self.encoder_outputs = self.model.get_encoder()(input_ids=self.prompt_ids, attention_mask=self.prompt_mask,
                                                                return_dict=True)
            kwargs |= {"encoder_outputs": self.encoder_outputs, "attention_mask": self.prompt_mask,
                       "decoder_input_ids": tokens}
        else:
            soft = self.prompt_embeds is not None and self.length == 0
            kwargs |= {"inputs_embeds": self._soft_prompted(tokens)} if soft else {"input_ids": tokens}
            kwargs["position_ids"] = positions
            if self.mask is not None:
                kwargs["attention_mask"] = self.mask
        if self.keep_hidden:
            kwargs["output_hidden_states"] = True
        stack = None if self.adapter_names is None else stacked_lora(self.model)
        if self.adapter_names is not None and stack is None:
            kwargs["adapter_names"] = self.adapter_names  # peft's mixed-adapter batches
        if self.length and self._compiled_step is not None:  # compiled steps: shapes fixed, no patching
            out = self._compiled_step(**kwargs, return_dict=True)
        else:
            with weight_first_linear(self.model, tokens.numel()), \
                    (contextlib.nullcontext() if stack is None else stack.rows(self.adapter_names)):
                out = self.model(**kwargs, return_dict=True)
        if self.keep_hidden:
            self.last_hidden = (out.decoder_hidden_states if self.encoder_decoder else out.hidden_states)[-1].float()
        self.length += tokens.shape[1]
        return out.logits[:, -keep:].float()

    def _soft_prompted(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input embeddings of the padded prompts with each row's placeholders replaced by its soft prompt."""
        embeds = self.model.get_input_embeddings()(tokens)  # (rows, length, hidden)
        k = self.prompt_embeds.shape[1]
        starts = (self.prompt_mask == 0).sum(dim=1)  # left padding: the soft prompt follows it
        columns = starts[:, None] + torch.arange(k, device=self.device)  # (rows, k)
        return embeds.scatter(1, columns[..., None].expand(-1, -1, embeds.shape[-1]), self.prompt_embeds.to(embeds.dtype))

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        """Run the prompts; the next-token logits of each row, (rows, vocab) in float32. A `fork` returns the
        logits of the prefill it was forked after."""
        if self._pending_logits is not None:
            logits, self._pending_logits = self._pending_logits, None
            return logits
        if self.length:
            raise RuntimeError("prefill runs once per engine")
        return self._forward(self.first_tokens(), keep=1, positions=None if self.encoder_decoder else self.positions)[:, -1]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, keep: int = 1) -> torch.Tensor:
        """Append `tokens` (rows, k) to every row; the logits of the last `keep` positions, (rows, keep, vocab)."""
        if self.encoder_decoder:
            return self._forward(tokens, keep)
        if self.mask is not None and not self.static:
            self.mask = torch.cat([self.mask, self.mask.new_ones(tokens.shape)], dim=1)
        positions = self.next_position[:, None] + torch.arange(tokens.shape[1], device=self.device)  # (rows, k)
        self.next_position = positions[:, -1] + 1
        return self._forward(tokens, keep, positions)

    def prompt_states(self) -> torch.Tensor:
        """(rows, hidden): each row's top-layer states averaged over its prompt tokens — the encoder's, or the
        decoder's from a prefill run with `keep_hidden`."""
        if self.encoder_decoder and self.encoder_outputs is not None:
            states = self.encoder_outputs.last_hidden_state.float()
        elif not self.encoder_decoder and self.last_hidden is not None and self.length == self.prompt_length:
            states = self.last_hidden
        else:
            raise RuntimeError("prompt_states needs the prefill (with keep_hidden, decoder-only models) and no step since")
        return masked_mean(states, self.prompt_mask)

    def alone(self, prompt: list[int]) -> Engine:
        """A fresh one-row engine of the same model for `prompt` (rows decoded one at a time)."""
        return Engine(self.model, [prompt], self.pad_id)

    def fork(self, rows: torch.Tensor, logits: torch.Tensor) -> Engine:
        """A new engine of `rows` of this prefilled batch (own cache, same model) whose `prefill` returns `logits`
        (rows, vocab): several strategies can continue from one prefill."""
        if not self.length or self.static:
            raise ValueError("fork needs a prefilled engine with a dynamic cache")
        forked = copy.copy(self)
        forked.cache = copy.deepcopy(self.cache)
        forked.select(rows)
        forked._pending_logits = logits
        forked.keep_hidden = False  # a strategy that needs the states (contrastive) asks again
        if self.last_hidden is not None:
            forked.last_hidden = self.last_hidden[rows.to(self.device)]
        return forked

    def select(self, rows: torch.Tensor) -> None:
        """Keep, reorder or repeat rows: row i becomes old row `rows[i]` (beams, dropping finished rows)."""
        rows = rows.to(self.device)
        if rows.numel() == self.rows and bool((rows == torch.arange(self.rows, device=self.device)).all()):
            return
        if self.length:
            self.cache.reorder_cache(rows)
        self.prompt_ids, self.prompt_mask = self.prompt_ids[rows], self.prompt_mask[rows]
        if self.prompt_embeds is not None:
            self.prompt_embeds = self.prompt_embeds[rows]
        if self.adapter_names is not None:
            self.adapter_names = [self.adapter_names[i] for i in rows.tolist()]
        if self.encoder_decoder:
            if self.encoder_outputs is not None:  # a new output: a fork's rows leave the original's alone
                self.encoder_outputs = BaseModelOutput(last_hidden_state=self.encoder_outputs.last_hidden_state[rows])
        else:
            self.positions, self.next_position = self.positions[rows], self.next_position[rows]
            if self.mask is not None:
                self.mask = self.mask[rows]
        self.rows = rows.numel()

    def merge(self, other: Engine) -> None:
        """Append the rows of `other`, a prefilled engine of the same decoder-only model, to this batch
        (continuous batching: requests join a running batch). The shorter cache is padded on the left with
        masked positions; each row keeps its own positions, so its logits do not depend on its neighbours."""
        if self.encoder_decoder or other.encoder_decoder or not self.length or not other.length:
            raise ValueError("merge joins prefilled engines of a decoder-only model")
        if self.static or other.static:
            raise ValueError("merge needs dynamic caches")
        if not all(type(layer) is DynamicLayer for layer in [*self.cache.layers, *other.cache.layers]):
            raise ValueError(f"merge needs a full-attention cache; {type(self.model).__name__} uses another layer kind")
        if (self.adapter_names is None) != (other.adapter_names is None):
            raise ValueError("merge joins engines that both name their rows' adapters, or neither")
        length = max(self.length, other.length)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, length, 2), _pad_left(theirs.keys, length, 2)])
            mine.values = torch.cat([_pad_left(mine.values, length, 2), _pad_left(theirs.values, length, 2)])
        self.mask = torch.cat([_pad_left(engine.full_mask(), length, 1) for engine in (self, other)])
        width = max(self.prompt_ids.shape[1], other.prompt_ids.shape[1])
        self.prompt_ids = torch.cat([_pad_left(e.prompt_ids, width, 1, self.pad_id) for e in (self, other)])
        self.prompt_mask = torch.cat([_pad_left(e.prompt_mask, width, 1) for e in (self, other)])
        self.positions = torch.cat([_pad_left(e.positions, width, 1) for e in (self, other)])
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.prompt_embeds = None  # read at prefill only
        if self.adapter_names is not None:
            self.adapter_names = self.adapter_names + other.adapter_names
        self.rows, self.length = self.rows + other.rows, length

    def full_mask(self) -> torch.Tensor:
        """(rows, cached positions): 1 where a row attends."""
        if self.mask is not None:
            return self.mask
        return torch.ones(self.rows, self.length, dtype=torch.long, device=self.device)

    def close(self) -> None:
        """Nothing to hand back: the cache goes with the engine (a llama.cpp engine returns its sequences)."""

    def compact(self) -> None:
        """Drop leading cache positions no row attends to (left after the longer rows of a merge finished)."""
        if self.encoder_decoder or self.static or self.mask is None or not self.length:
            return
        unused = int((self.mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())
        if unused == 0:
            return
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
        self.mask, self.length = self.mask[:, unused:], self.length - unused
        if bool(self.mask.all()):
            self.mask = None

    def crop(self, length: int) -> None:
        """Forget every cached position from `length` on (rejected speculative tokens)."""
        removed = self.length - length
        if removed <= 0:
            return
        if self.static:
            raise ValueError("a static cache cannot be cropped (speculative strategies need cache: dynamic)")
        self.cache.crop(-removed)
        self.length = length
        if not self.encoder_decoder:
            self.next_position = self.next_position - removed
            if self.mask is not None:
                self.mask = self.mask[:, :length]
