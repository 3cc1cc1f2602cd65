"""PEFT (`tuning.peft`): LoRA, DoRA, IA³, prompt or prefix tuning from `peft` — its fields (params.py), hooks
(method.py) and how an adapter is attached (attach.py)."""
