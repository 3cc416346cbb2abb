"""Landscape probes: Lanczos, Hessian and NTK spectra, and period-2 bifurcation detection."""
from dlf.probes.bifurcation import delta_f, episodes, threshold, threshold_summary
from dlf.probes.hessian import hessian_top, hvp
from dlf.probes.lanczos import lanczos
from dlf.probes.ntk import balanced_subset, first_n, ntk_matrix, ntk_top

__all__ = ["balanced_subset", "delta_f", "episodes", "first_n", "hessian_top", "hvp", "lanczos",
           "ntk_matrix", "ntk_top", "threshold", "threshold_summary"]
