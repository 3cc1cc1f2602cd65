"""The training loop (on accelerate), its checkpoints and its logs."""
