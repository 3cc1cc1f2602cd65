"""What one call of `generate` decodes: `DecodeRequest` (the prompts and what every strategy needs) and
`PromptInputs` (what only some strategies read: images, soft prompts, an engine already prefilled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lmforge.decode.params import DecodeParams
from lmforge.decode.strategies.sampling import OnTokens

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from lmforge.decode.engine import Engine
    from lmforge.vision.scorer import ImageTextScorer


@dataclass
class PromptInputs:
    """Per-prompt inputs beside the tokens, for the strategies and guidance that use them.

    `images`: one per prompt (None: that prompt is not guided) with `decode.image_weight`, rated by `image_scorer`
    (default: `decode.image_scorer`, loaded when needed); `prompt_texts`: what `decode.image_gate` compares each
    image with (default: the decoded prompt tokens). `prompt_embeds` (prompts, k, hidden): a soft prompt per
    prompt, read before its tokens (decoder-only models). `prefilled`: an engine whose rows are the prompts, in
    order, already prefilled (`Engine.fork`): the strategy continues from it, in one batch."""

    images: list[Image.Image | None] | None = None
    image_scorer: ImageTextScorer | None = None
    prompt_texts: list[str] | None = None
    prompt_embeds: torch.Tensor | None = None
    prefilled: Engine | None = None


@dataclass
class DecodeRequest:
    """Decode `prompts` (token ids) with `params`: at most `max_new_tokens` each, stopping at `stop_strings`,
    `batch_size` prompts at a time under `precision` autocast; `on_tokens(rows, tokens)` hears greedy/sampled
    tokens as they come (rows index `prompts`); `progress` shows a bar."""

    prompts: list[list[int]]
    params: DecodeParams
    max_new_tokens: int
    stop_strings: list[str] | None = None
    batch_size: int = 16
    precision: str = "fp32"
    progress: bool = False
    on_tokens: OnTokens | None = None
    inputs: PromptInputs = field(default_factory=PromptInputs)
