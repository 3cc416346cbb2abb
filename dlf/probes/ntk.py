"""Empirical NTK Theta = J J^T over (samples x outputs): explicit, matrix-free, and sample sets."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dlf.probes.lanczos import lanczos


def jacobian(apply: Callable[[Any, jax.Array], jax.Array], params, x_NxD) -> jax.Array:
    """J[(i, k), p] = d f_k(x_i) / d w_p, shape (N*K, P); rows sample-major (i*K + k), columns
    the raveled parameters. Forward mode (P jvps), as P is small for the probes' models."""
    flat, unravel = ravel_pytree(params)
    return jax.jacfwd(lambda w: apply(unravel(w), x_NxD).reshape(-1))(flat)


def ntk_matrix(apply: Callable[[Any, jax.Array], jax.Array], params, x_NxD) -> jax.Array:
    """Theta[(i, k), (j, l)] = sum_p d f_k(x_i)/d w_p  d f_l(x_j)/d w_p = (J J^T), (N*K, N*K).

    Paper Eq. 11 on the sample set x (outputs = logits). Explicit: for small sets only.
    """
    J = jacobian(apply, params, x_NxD)
    return jnp.matmul(J, J.T, precision=jax.lax.Precision.HIGHEST)


def flat_ntk_vp(apply: Callable[[Any, jax.Array], jax.Array], params, x_NxD) -> tuple[Callable, int]:
    """(matvec, dim): u_{NK} -> Theta u = J (J^T u), a vjp then a jvp; Theta is never formed."""
    f = lambda p: apply(p, x_NxD).reshape(-1)  # noqa: E731
    out, f_vjp = jax.vjp(f, params)
    _, f_jvp = jax.linearize(f, params)
    return (lambda u: f_jvp(f_vjp(u)[0])), out.shape[0]


def ntk_top(apply: Callable[[Any, jax.Array], jax.Array], params, x_NxD, key: jax.Array,
            order: int, k: int = 1) -> tuple[jax.Array, jax.Array]:
    """(lambda_max, top_k) of the empirical NTK on x, matrix-free: `order` Lanczos steps on
    NTK-vector products from a start vector drawn from `key`. order, k static, k <= order."""
    if not 1 <= k <= order:
        raise ValueError(f"k={k} must be in 1..order={order}")
    matvec, dim = flat_ntk_vp(apply, params, x_NxD)
    theta = lanczos(matvec, dim, order, key, ravel_pytree(params)[0].dtype)
    return theta[0], theta[:k]


def balanced_subset(y_N: np.ndarray, n: int, classes: int) -> np.ndarray:
    """Indices of n samples, n // classes per class (the first n % classes classes get one more),
    evenly spaced through each class's samples in dataset order (on the spiral: along the arm).
    Deterministic; sorted. Fails if a class has too few samples."""
    y_N = np.asarray(y_N)
    picks = []
    for c in range(classes):
        members = np.flatnonzero(y_N == c)
        want = n // classes + (c < n % classes)
        if want > members.size:
            raise ValueError(f"class {c} has {members.size} samples, {want} requested")
        picks.append(members[np.linspace(0, members.size - 1, want).round().astype(int)])
    return np.sort(np.concatenate(picks))


def first_n(y_N: np.ndarray, n: int) -> np.ndarray:
    """Indices 0..n-1: the authors' notebook's NTK set (its first 50 points are all class 0)."""
    if n > len(y_N):
        raise ValueError(f"{n} samples requested, the set has {len(y_N)}")
    return np.arange(n)
