"""Lanczos with full reorthogonalisation on a symmetric matvec over flat vectors (jit/vmap-safe)."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp


def tridiagonal(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, order: int,
                rtol: float | None = None):
    """`order` Lanczos steps from v0 (normalised here): M v_j = b_{j-1} v_{j-1} + a_j v_j + b_j v_{j+1}.

    Full reorthogonalisation: w = M v_j is projected off every basis vector so far, twice
    (classical Gram-Schmidt twice), so V stays orthonormal to rounding and Ritz values do not
    repeat. Breakdown: once b_j <= rtol * max(|a|, b seen so far) the Krylov space is invariant
    (or exhausted, e.g. order > dim); that step and all later ones are masked (v = 0, a = b = 0)
    rather than branched on, so the loop has a static trip count and traces under jit/vmap/scan.
    rtol defaults to sqrt(eps) of the dtype. order > len(v0) works (masked) but wastes steps.

    Returns (a_M, b_M, size): diagonal, off-diagonal (b_M[j] couples j and j+1; the last is the
    residual norm) and the number of valid steps (int32), M = order.
    """
    dim, dtype = v0.shape[0], v0.dtype
    rtol = float(jnp.finfo(dtype).eps) ** 0.5 if rtol is None else rtol
    V = jnp.zeros((order + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))  # +1: v_{M}
    dot = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)  # no TF32 in the basis

    def step(carry, j):
        V, scale, alive = carry
        v = V[j]
        w = matvec(v)
        a = dot(v, w)
        for _ in range(2):  # CGS2: rows of V not yet filled are zero and drop out
            w = w - dot(dot(V, w), V)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        next_alive = alive & (b > rtol * scale)
        v_next = jnp.where(next_alive, w / jnp.where(next_alive, b, 1), 0)
        V = jax.lax.dynamic_update_index_in_dim(V, v_next, j + 1, 0)
        return (V, scale, next_alive), (jnp.where(alive, a, 0), jnp.where(alive, b, 0), alive)

    init = (V, jnp.zeros((), dtype), jnp.ones((), bool))
    _, (a, b, alive) = jax.lax.scan(step, init, jnp.arange(order))
    return a, b, jnp.sum(alive, dtype=jnp.int32)


def ritz_values(a_M: jax.Array, b_M: jax.Array, size: jax.Array) -> jax.Array:
    """Eigenvalues of the leading size x size block of the tridiagonal (a, b), sorted descending;
    the M - size slots past the Krylov dimension are NaN.

    Masked diagonal slots are filled with a value below the block's Gershgorin lower bound (and
    decoupled), so they sort last and cannot perturb the valid eigenvalues beyond rounding.
    """
    M = a_M.shape[0]
    valid = jnp.arange(M) < size
    off = jnp.where(jnp.arange(M - 1) < size - 1, b_M[:-1], 0)
    radius = jnp.abs(jnp.pad(off, (1, 0))) + jnp.abs(jnp.pad(off, (0, 1)))
    lower = jnp.min(jnp.where(valid, a_M - radius, jnp.inf))
    spread = jnp.max(jnp.where(valid, jnp.abs(a_M) + radius, 0))
    diag = jnp.where(valid, a_M, lower - spread - 1)
    T = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
    theta = jnp.linalg.eigvalsh(T)[::-1]
    return jnp.where(valid, theta, jnp.nan)


def start_vector(key: jax.Array, dim: int, dtype=None) -> jax.Array:
    """A unit Gaussian start vector: a fresh key per call gives a fresh start (SPEC 3)."""
    v = jax.random.normal(key, (dim,), dtype or jnp.result_type(float))
    return v / jnp.linalg.norm(v)


def lanczos(matvec: Callable[[jax.Array], jax.Array], dim: int, order: int, key: jax.Array,
            dtype=None) -> jax.Array:
    """Ritz values of the symmetric operator `matvec` on R^dim after `order` Lanczos steps from a
    random start drawn from `key`, sorted descending; entry 0 is the lambda_max estimate.

    `order` and `dim` are static. With order >= dim (run as dim steps) the Ritz values are the
    eigenvalues of the operator (those the start vector reaches). Slots beyond the Krylov
    dimension (order > dim, or an earlier breakdown, e.g. repeated eigenvalues) are NaN.
    """
    steps = min(order, dim)
    a, b, size = tridiagonal(matvec, start_vector(key, dim, dtype), steps)
    theta = ritz_values(a, b, size)
    return jnp.pad(theta, (0, order - steps), constant_values=jnp.nan)
