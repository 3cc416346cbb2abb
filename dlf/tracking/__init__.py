"""Experiment trackers that mirror a run's local files (W&B)."""
