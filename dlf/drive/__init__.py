"""Drivers: the builder (config -> program, data, states), the run and grid drivers, progress and reporting."""
