"""Sequence-level ("decoding-based") training: losses over what the decoder produced, and their rewards."""
