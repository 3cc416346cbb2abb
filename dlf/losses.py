"""Dynamical losses: per-sample losses weighted by the class weights Gamma(t)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits_BxC, labels_B):
    """Per-sample softmax cross-entropy, shape (B,)."""
    logp = jax.nn.log_softmax(logits_BxC, axis=-1)
    return -jnp.take_along_axis(logp, labels_B[:, None], axis=-1)[:, 0]


def dynamical_cross_entropy(logits_BxC, labels_B, gamma_C):
    """F = mean_j Gamma_{y_j} CE(f(x_j), y_j) (the mean, as the authors' code; SPEC 1).

    Returns (F, plain mean CE).
    """
    ce = cross_entropy(logits_BxC, labels_B)
    return jnp.mean(gamma_C[labels_B] * ce), jnp.mean(ce)


LOSSES = {"cross_entropy": dynamical_cross_entropy}
