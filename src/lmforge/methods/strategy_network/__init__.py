"""The multi-task strategy network (`tuning.strategy_network`): one LoRA expert per task on a shared backbone
and the router that picks the expert for each input from its hidden state (no task id at inference) — its fields
(params.py), hooks (method.py), experts and router (experts.py) and the generation task that trains and routes
through them (task.py)."""
