"""Serving: an OpenAI-compatible HTTP API over the decoding engine."""
