"""Decoding: turning a model and prompts into token sequences (greedy for now; the engine grows here)."""
