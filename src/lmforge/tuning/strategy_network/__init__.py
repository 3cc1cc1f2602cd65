"""The multi-task strategy network's parts: one LoRA expert per task on a shared backbone and the router that
picks the expert for each input from its hidden state (no task id at inference). The generation task that
trains and routes through them is `lmforge.tasks.strategy_network`."""
