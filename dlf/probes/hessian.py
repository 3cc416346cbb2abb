"""Hessian probes of a scalar loss of a params pytree: HVP (forward-over-reverse) and Lanczos."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.flatten_util import ravel_pytree

from dlf.probes.lanczos import lanczos


def hvp(loss_fn: Callable[[Any], jax.Array], params, v):
    """H v = d/de grad L(params + e v) at e = 0: `jvp` of `grad` (forward-over-reverse).

    v is a pytree like params; so is the result.
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def flat_hvp(loss_fn: Callable[[Any], jax.Array], params) -> tuple[Callable, int]:
    """(matvec, dim): u_P -> H u_P over the raveled parameters.

    The gradient is linearised once (jax.linearize = forward-over-reverse with the primal and
    the backward pass's residuals computed once), so each Lanczos step costs one tangent pass.
    """
    flat, unravel = ravel_pytree(params)
    _, lin = jax.linearize(jax.grad(loss_fn), params)
    return (lambda u: ravel_pytree(lin(unravel(u)))[0]), flat.shape[0]


def hessian_top(loss_fn: Callable[[Any], jax.Array], params, key: jax.Array, order: int,
                k: int = 1) -> tuple[jax.Array, jax.Array]:
    """(lambda_max, top_k) of the Hessian of loss_fn at params: the largest `k` Ritz values of
    `order` Lanczos steps (full reorthogonalisation) from a start vector drawn from `key`.

    loss_fn must close over everything but params (the batch and Gamma(t), so that it is F at
    the current t). order, k are static, k <= order; top_k slots past the Krylov dimension are NaN.
    """
    if not 1 <= k <= order:
        raise ValueError(f"k={k} must be in 1..order={order}")
    matvec, dim = flat_hvp(loss_fn, params)
    dtype = ravel_pytree(params)[0].dtype
    theta = lanczos(matvec, dim, order, key, dtype)
    return theta[0], theta[:k]
