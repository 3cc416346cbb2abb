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


def static(tT, A, T):
    """1: the ordinary loss."""
    return jnp.ones_like(tT.astype(A.dtype))


# g(tT, A, T): the raw weight of the emphasised class, 1 at tT=0, A at mid-period, 1 at tT=T.
# Comparisons with T/2, T/4 are done in integers, so odd T is exact.
SHAPES = Registry("schedule.shape")
for _g in (triangle, cosine, square, static):
    SHAPES.register(_g.__name__, _g)


def profile(shape: str, t_in_period, A, T):
    """g(tT) of a registered shape."""
    return SHAPES[shape](t_in_period, A, T)


def gamma(step, A, T, num_classes: int, shape: str = "triangle", off_step=NEVER, dtype=jnp.float32):
    """Gamma_i(t) for i = 0..C-1, shape step.shape + (C,).

    step, A, T and off_step may be traced (one compiled program serves every (A, T));
    `shape` and `num_classes` are static. k(t) = floor(t/T) mod C is the emphasised class,
    Gamma_i = C G_i / sum_j G_j with G_k = g(t mod T), G_i = 1 otherwise, and Gamma = 1 for
    t >= off_step. sum_i Gamma_i = C always.
    """
    step = jnp.asarray(step, jnp.int32)[..., None]
    T = jnp.asarray(T, jnp.int32)
    A = jnp.asarray(A, dtype)
    g = profile(shape, step % T, A, T)
    k = (step // T) % num_classes
    G = jnp.where(jnp.arange(num_classes) == k, g, jnp.ones((), dtype))
    Gamma = num_classes * G / jnp.sum(G, axis=-1, keepdims=True)
    return jnp.where(step >= jnp.asarray(off_step, jnp.int32), jnp.ones((), dtype), Gamma)
