"""Tuning strategies: what part of a model trains (freezing, PEFT adapters) — each a `tuning:` config switch."""

import warnings

# peft (0.21) reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model: a warning per run
# that users can do nothing about.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
