"""The multi-task strategy network: one LoRA expert per task on a shared backbone, and a learned router that
picks the expert for each input from its hidden state (no task id at inference)."""
