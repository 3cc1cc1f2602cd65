"""Tuning strategies: what part of a model trains (freezing, PEFT adapters) — each a `tuning:` config switch."""
