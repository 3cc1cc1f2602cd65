"""Sequence-level ("decoding-based") training (`tuning.sequence`: MRT, SCST, GRPO): its fields (params.py), hooks
(method.py), objectives (train.py) and losses (losses.py); rewards are `lmforge.metrics.rewards`."""
