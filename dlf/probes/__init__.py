"""Landscape probes: Lanczos, Hessian and NTK spectra, and the probe evaluators (PROBES registry)."""
from dlf.probes.hessian import hessian_top, hvp
from dlf.probes.lanczos import lanczos
from dlf.probes.ntk import balanced_subset, first_n, ntk_matrix, ntk_top

__all__ = ["balanced_subset", "first_n", "hessian_top", "hvp", "lanczos", "ntk_matrix", "ntk_top"]
