"""Preference tuning (`tuning.preference`: DPO, IPO, SimPO, ORPO, KTO): its fields (params.py), hooks (method.py),
losses (losses.py, TRL's formulas) and the generation task trained on preference rows (task.py)."""
