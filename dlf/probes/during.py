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
    """The NTK sample set: class-balanced (default) or the first N points (the authors' notebook,
    whose first 50 spiral points are all of class 0)."""
    n = min(cfg.probes.ntk.samples, len(y_train))
    return balanced_subset(y_train, n, classes) if cfg.probes.ntk.set == "balanced" else first_n(y_train, n)


def make_probe(cfg, ntk_idx: np.ndarray, classes: int) -> Callable:
    """(program, state, hp, data) -> {hessian_lambda_max, ntk_lambda_max} of one run, at its
    current step: the top Hessian eigenvalue of F(t) itself (full batch, Lanczos of order
    probes.hessian.order, a fresh start vector from the run's probe key folded with the step), and
    the top eigenvalue of the empirical NTK on the sample set (explicit J J^T + eigvalsh up to
    probes.ntk.explicit_max rows, matrix-free Lanczos beyond)."""
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
              lr: float) -> dict[str, Any]:
    """summary.json's `threshold` (mean Hessian lambda_max at the period-2 onsets, per seed and
    pooled) plus the edge-of-stability reference 2/lr."""
    out = threshold_summary(F_RxT, probe_steps, hessian_RxS, seeds=seeds)
    out["edge_of_stability"] = 2.0 / lr
    return out
