"""Continual learning (`tuning.continual`): go on from a previous run with replay and EWC — its hooks
(method.py) and mathematics (ewc.py)."""
