"""Dynamical class weights Gamma_i(t) (SPEC 1) as a pure function of a traced step."""
from __future__ import annotations

import jax.numpy as jnp

from dlf.core.registry import Registry

NEVER = jnp.iinfo(jnp.int32).max  # `off_step` value meaning "oscillations never stop"


def triangle(tT, A, T):
    """The paper's shape: 1 + m tT up to T/2, 2A - 1 - m tT after, m = 2(A-1)/T."""
    x = tT.astype(A.dtype)
    m = 2.0 * (A - 1.0) / T.astype(A.dtype)
    return jnp.where(2 * tT <= T, 1.0 + m * x, 2.0 * A - 1.0 - m * x)


def cosine(tT, A, T):
    """1 + (A-1)(1 - cos(2 pi tT / T)) / 2."""
    return 1.0 + (A - 1.0) * 0.5 * (1.0 - jnp.cos(2.0 * jnp.pi * tT.astype(A.dtype) / T.astype(A.dtype)))


def square(tT, A, T):
    """A for T/4 <= tT < 3T/4 (centred on the triangle's peak), else 1."""
    return jnp.where((4 * tT >= T) & (4 * tT < 3 * T), A, jnp.ones_like(A))


def constant(tT, A, T):
    """A throughout: with schedule.order=fixed, a static non-uniform class weighting (a control)."""
    return jnp.broadcast_to(A, tT.shape).astype(A.dtype)


def static(tT, A, T):
    """1: the ordinary loss."""
    return jnp.ones_like(tT.astype(A.dtype))


# g(tT, A, T): the raw weight of the emphasised class, 1 at tT=0, A at mid-period, 1 at tT=T.
# Comparisons with T/2, T/4 are done in integers, so odd T is exact.
SHAPES = Registry("schedule.shape")
for _g in (triangle, cosine, square, static, constant):
    SHAPES.register(_g.__name__, _g)


def profile(shape: str, t_in_period, A, T):
    """g(tT) of a registered shape."""
    return SHAPES[shape](t_in_period, A, T)


ORDERS = ("cyclic", "random", "fixed")


def _mix32(x):
    """A 32-bit integer hash (the finaliser of MurmurHash3), elementwise on uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def emphasised(period, num_classes: int, order: str = "cyclic", order_seed=0):
    """The emphasised class k of period number `period` (int32, any shape). cyclic: k = period mod
    C (the paper); fixed: k = 0 always (with shape=constant a static non-uniform weighting);
    random: each cycle of C periods visits the C classes in its own order, a permutation drawn
    from (order_seed, cycle) by ranking C hashed values (integer arithmetic only, so the same on
    every backend)."""
    if order == "cyclic":
        return period % num_classes
    if order == "fixed":
        return jnp.zeros_like(period)
    cycle, pos = period // num_classes, period % num_classes
    base = jnp.asarray(order_seed, jnp.uint32) * jnp.uint32(0x9E3779B9) + cycle.astype(jnp.uint32) * jnp.uint32(
        0x632BE5AB)
    u = _mix32(base[..., None] + jnp.arange(num_classes, dtype=jnp.uint32) * jnp.uint32(0x27D4EB2F))
    idx = jnp.arange(num_classes)
    # rank of class i: values below it, ties broken by index; the class at position `pos` is k
    lower = (u[..., None, :] < u[..., :, None]) | ((u[..., None, :] == u[..., :, None]) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(lower, axis=-1)
    return jnp.sum(jnp.where(rank == pos[..., None], idx, 0), axis=-1)


def gamma(step, A, T, num_classes: int, shape: str = "triangle", off_step=NEVER, dtype=jnp.float32,
          order: str = "cyclic", order_seed=0, period_extra: int = 0):
    """Gamma_i(t) for i = 0..C-1, shape step.shape + (C,).

    step, A, T and off_step may be traced (one compiled program serves every (A, T));
    `shape`, `num_classes`, `order` and `period_extra` are static. A period lasts P = T +
    period_extra steps (0: dlf; 1: the authors' notebook, whose counter runs 0..T); k(t) =
    emphasised(floor(t/P)) (cyclic: floor(t/P) mod C) is the emphasised class, Gamma_i = C G_i /
    sum_j G_j with G_k = g(t mod P), G_i = 1 otherwise, and Gamma = 1 for t >= off_step.
    sum_i Gamma_i = C always.
    """
    step = jnp.asarray(step, jnp.int32)[..., None]
    T = jnp.asarray(T, jnp.int32)
    A = jnp.asarray(A, dtype)
    P = T + period_extra
    g = profile(shape, step % P, A, T)
    k = emphasised(step // P, num_classes, order, order_seed)
    G = jnp.where(jnp.arange(num_classes) == k, g, jnp.ones((), dtype))
    Gamma = num_classes * G / jnp.sum(G, axis=-1, keepdims=True)
    return jnp.where(step >= jnp.asarray(off_step, jnp.int32), jnp.ones((), dtype), Gamma)
