"""Run directories: the run config (schema), creating and reading a run folder, loading a trained run's model
(with its adapters) and serving a task run's predictions — what the recipes share, below them."""
