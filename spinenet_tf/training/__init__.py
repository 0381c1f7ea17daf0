"""Training: experiment configs, strategies, tasks and the custom loop."""
