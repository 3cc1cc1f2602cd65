"""Tuning methods: each one module owning its `tuning:` fields and the hooks the pipeline composes
(`TUNING` in registry.py). The mechanisms they use live in `lmforge.tuning`."""
