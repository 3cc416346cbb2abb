"""Dynamical losses: per-sample losses weighted by the class weights Gamma(t)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dlf.core.registry import Registry


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


def _squared_error(logits_BxC, labels_B):
    """(f(x_j) - onehot(y_j))_k^2, shape (B, C)."""
    return (logits_BxC - jax.nn.one_hot(labels_B, logits_BxC.shape[-1], dtype=logits_BxC.dtype)) ** 2


def dynamical_mse_by_sample(logits_BxC, labels_B, gamma_C):
    """F = (1/2|B|) sum_j Gamma_{y_j} ||f(x_j) - onehot(y_j)||^2: each sample weighted by its
    class (SPEC 1, beyond the paper). Returns (F, plain MSE = the same with Gamma = 1)."""
    se_B = jnp.sum(_squared_error(logits_BxC, labels_B), axis=-1)
    return 0.5 * jnp.mean(gamma_C[labels_B] * se_B), 0.5 * jnp.mean(se_B)


def dynamical_mse_by_output(logits_BxC, labels_B, gamma_C):
    """F = (1/2|B|) sum_j sum_k Gamma_k (f_k(x_j) - onehot(y_j)_k)^2: each output component k
    weighted by Gamma_k (SPEC 1, beyond the paper). Returns (F, plain MSE)."""
    se_BxC = _squared_error(logits_BxC, labels_B)
    return 0.5 * jnp.mean(jnp.sum(gamma_C * se_BxC, -1)), 0.5 * jnp.mean(jnp.sum(se_BxC, -1))


# name -> (logits_BxC, labels_B, gamma_C) -> (F, the plain loss with Gamma = 1)
LOSSES = Registry("loss")
LOSSES.register("cross_entropy", dynamical_cross_entropy)
LOSSES.register("mse_sample", dynamical_mse_by_sample)
LOSSES.register("mse_output", dynamical_mse_by_output)
