"""Probes during training: the function the engine evaluates at every probe point, and the
host-side summary (threshold) of a run's probe series."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dlf.probes.bifurcation import threshold_summary
from dlf.probes.hessian import hessian_top
from dlf.probes.ntk import balanced_subset, first_n, ntk_matrix, ntk_top

KEYS = ("hessian_lambda_max", "ntk_lambda_max")  # per-seed row keys


def ntk_indices(cfg, y_train: np.ndarray, classes: int) -> np.ndarray:
    """The NTK set: every training point (probes.ntk.samples null, the default: the paper's
    Sec. 3.4 NTK over all N samples), or a sample set of that size, class-balanced or the first N
    points (the authors' notebook, whose first 50 spiral points are all of class 0)."""
    if cfg.probes.ntk.samples is None:
        return np.arange(len(y_train))
    n = min(cfg.probes.ntk.samples, len(y_train))
    return balanced_subset(y_train, n, classes) if cfg.probes.ntk.set == "balanced" else first_n(y_train, n)


def make_probe(cfg, ntk_idx: np.ndarray, classes: int) -> Callable:
    """(program, state, hp, data) -> {hessian_lambda_max, ntk_lambda_max} of one run, at its
    current step: the top Hessian eigenvalue of F(t) itself (full batch, Lanczos of order
    probes.hessian.order, a fresh start vector from the run's probe key folded with the step), and
    the top eigenvalue of the empirical NTK Theta = J J^T on the NTK set (J: Jacobian of the
    N x C logits, no 1/N; explicit J J^T + eigvalsh up to probes.ntk.explicit_max rows,
    matrix-free Lanczos beyond)."""
    p = cfg.probes
    idx = jnp.asarray(ntk_idx)
    explicit = len(ntk_idx) * classes <= p.ntk.explicit_max

    def probe(program, state, hp, data) -> dict[str, Any]:
        key_h, key_n = jax.random.split(jax.random.fold_in(state.probe_key, state.step))
        x = program.inputs(data.x_train, data)
        F = lambda params: program.objective(state, hp, x, data.y_train, data)(params)[0]  # noqa: E731
        out = {"hessian_lambda_max": hessian_top(F, state.params, key_h, p.hessian.order)[0]}
        if p.ntk.enabled:
            f = lambda params, xs: program.apply(params, state.model_state, xs, False)[0]  # noqa: E731
            xs = x[idx]
            if explicit:
                out["ntk_lambda_max"] = jnp.linalg.eigvalsh(ntk_matrix(f, state.params, xs))[-1]
            else:
                out["ntk_lambda_max"] = ntk_top(f, state.params, xs, key_n, p.ntk.order)[0]
        return out

    return probe


def summarize(F_RxT: np.ndarray, probe_steps: np.ndarray, hessian_RxS: np.ndarray, seeds: list[int],
              lr: float, T: int, quiet_frac: float, onset_amp: float) -> dict[str, Any]:
    """summary.json's `threshold` (Hessian lambda_max at the first onset of each cascade, branch
    averaged, per seed and pooled; the paper-literal variant beside it; dlf.probes.bifurcation)
    plus the edge-of-stability reference 2/lr of gradient descent."""
    out = threshold_summary(F_RxT, probe_steps, hessian_RxS, T, seeds=seeds, quiet_frac=quiet_frac,
                            onset_amp=onset_amp)
    out["edge_of_stability"] = 2.0 / lr
    return out
