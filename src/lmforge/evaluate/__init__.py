"""Run a model over data through its task, and write reports and plots."""
