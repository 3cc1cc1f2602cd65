"""Tuning methods: each one home — a module, or a package when it needs several files — owning its `tuning:`
fields, the hooks the pipeline composes (`TUNING` in registry.py) and its mathematics."""

import warnings

# peft (0.21) reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model: a warning per run
# that users can do nothing about.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
