"""Decoding: our own engine (engine.py steps the model), rules (logits processors), strategies by name,
and `generate`, the front door that evaluation, prediction and the CLI share."""
