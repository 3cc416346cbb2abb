"""Figures: run dynamics, the Fig. 4/5 probe panels, phase diagrams (matplotlib, Agg)."""
