"""The jobs a user runs, each readable top to bottom: finetune, evaluate, predict, demo, models."""
