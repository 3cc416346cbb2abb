"""A fused full-batch loss-and-gradient for the one-hidden-layer MLP with dynamical cross-entropy.

The generic engine differentiates the Flax model with `jax.value_and_grad`: on a CPU that is
~25 small kernels per step, each storing (samples, hidden) arrays. Here the same maths is two
passes that never store anything of size (samples, hidden): the pre-activation z = x W1 + b1 is
recomputed inside each pass from the parameters and the (N,) data columns, and each pass is one
variadic `lax.reduce` (several outputs at once), which XLA compiles to one loop nest:

  pass 1, over the hidden axis:  delta_c(n) = sum_h relu(z_nh) V_hc + (b2_c - b2_0),  c = 1..C-1
  pass 2, over the samples:      dV_hc = sum_n relu(z_nh) g_nc,  db1_h = sum_n dz_nh,
                                 dW1_dh = sum_n x_nd dz_nh,  dz_nh = [z_nh > 0] sum_c g_nc V_hc

with V_hc = W2_hc - W2_h0 and g = dF/dlogits = Gamma_y (softmax - onehot) / N. Softmax
cross-entropy depends on the logits only through their differences to class 0 (delta_0 = 0),
and sum_c g_nc = 0, so class 0's columns follow from the others: dW2_h0 = -sum_c>0 dV_hc. Each
pass then costs C-1 instead of C multiply-adds per (sample, hidden unit) for the output layer.
The samples are padded to a multiple of 16 (a whole number of 512-bit float32 vectors in pass 1,
which vectorises along them) with copies of the last sample that carry no weight.

Only the compiled training chunks get `COMPILER_OPTIONS` (XLA:CPU fast-math, 512-bit vectors, no
YNNPACK reductions):
without fast-math LLVM may not re-associate the sums and leaves them scalar (~10x slower).
They are per-compilation options, not process-wide XLA_FLAGS, so initialisation, evaluation and
everything else compile as usual (a seed gives the same initial parameters on either path).
NaN and Inf stay honoured (XLA's fast-math defaults), so the divergence guard works unchanged;
sums and exp/log are re-associated/approximated, so the fused path agrees with the generic one
to rounding (float64: < 1e-12 over 100 steps at lr 1, tested), not bit for bit (BENCHMARKS.md "Fused step").

The maths of one hidden ReLU layer, loss cross_entropy, full batch, on plain (non-image) inputs:
any width, class count (>= 2) and input dimension; float32 and float64. This module only computes,
on the layer's arrays (`MLPArrays`); which configurations it trains is decided by the builder
(dlf.drive.build) from what a model's spec declares (dlf.models.FusedSupport). The optax update
and the divergence guard stay the engine's (Program.step_with_loss with `loss_grad` set).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

_LOG_TINY = {jnp.dtype(t): float(jnp.log(jnp.finfo(t).tiny)) for t in (jnp.float32, jnp.float64)}
LANES = 16  # samples padded to a multiple of this: 512-bit vectors of float32 (2 of float64)
VMAP_SIZE = 32  # runs vectorised together (train.vmap_size null): 16-32 measured fastest (BENCHMARKS.md)
GROUP_MIN = 2  # never fewer runs vectorised together: XLA compiles a lone run to another rounding order
COMPILER_OPTIONS = {
    "xla_cpu_enable_fast_math": True,  # lets LLVM vectorise the reductions (re-associates sums)
    "xla_cpu_prefer_vector_width": 512,  # 16 float32 lanes where the CPU has AVX-512
    # library fusions for dots only: YNNPACK's reduce kernels block by the number of runs, so a run's
    # F (evaluated in the same program) would depend at the last bit on how many runs share it
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


class MLPArrays(NamedTuple):
    """The arrays of one hidden layer and its output layer (parameters, or their gradients)."""
    W1: jax.Array  # (D, H)
    b1: jax.Array  # (H,)
    W2: jax.Array  # (H, C)
    b2: jax.Array  # (C,)


def _sum(operands, axis: int):
    """Sums of several same-shape arrays over `axis` as ONE variadic reduce (one loop nest)."""
    zeros = [jnp.zeros((), x.dtype) for x in operands]
    return lax.reduce(list(operands), zeros, lambda a, b: [u + v for u, v in zip(a, b)], (axis,))


def _pre_activation(W1_DxH, b1_H, x_NxD, transposed: bool):
    """z = x W1 + b1 as D broadcast multiply-adds: (N, H), or (H, N) when transposed."""
    D = x_NxD.shape[1]
    if transposed:
        z = b1_H[:, None]
        for d in range(D):
            z = z + W1_DxH[d][:, None] * x_NxD[:, d][None, :]
    else:
        z = b1_H[None, :]
        for d in range(D):
            z = z + x_NxD[:, d][:, None] * W1_DxH[d][None, :]
    return z


def _differences(p: MLPArrays) -> tuple[list[jax.Array], list[jax.Array]]:
    """V_c = W2[:, c] - W2[:, 0] and b2_c - b2_0 for c = 1..C-1: what softmax-CE depends on."""
    W2, b2 = p.W2, p.b2
    C = W2.shape[1]
    return [W2[:, c] - W2[:, 0] for c in range(1, C)], [b2[c] - b2[0] for c in range(1, C)]


def _delta_columns(p: MLPArrays, V, vb, x_NxD) -> list[jax.Array]:
    """Fused pass 1: the C-1 logit differences to class 0 (V, vb: `_differences`), each (N,)
    (never stores (N, H))."""
    W1, b1 = p.W1, p.b1
    h_HxN = jnp.maximum(_pre_activation(W1, b1, x_NxD, transposed=True), 0)
    cols = _sum([h_HxN * v[:, None] for v in V], axis=0)
    return [col + b for col, b in zip(cols, vb)]


def mlp_logits(p: MLPArrays, x_NxD):
    """The MLP's logits (N, C), with class 0's column by pass 1 over the first output alone."""
    W1, b1, W2, b2 = p
    h_HxN = jnp.maximum(_pre_activation(W1, b1, x_NxD, transposed=True), 0)
    cols = _sum([h_HxN * W2[:, c][:, None] for c in range(W2.shape[1])], axis=0)
    return jnp.stack([col + b2[c] for c, col in enumerate(cols)], axis=-1)


def _padded(x_NxD, y_N):
    """(x, y) padded to a multiple of LANES samples: copies of the last input (finite logits
    wherever the real ones are), labelled -1 (no class: weight Gamma 0, so no loss and no gradient)."""
    N = x_NxD.shape[0]
    P = -(-N // LANES) * LANES - N
    return jnp.pad(x_NxD, ((0, P), (0, 0)), mode="edge"), jnp.pad(y_N, (0, P), constant_values=-1)


def loss_and_grad(p: MLPArrays, x_NxD, y_N, gamma_C) -> tuple[jax.Array, MLPArrays]:
    """(F, dF/dp) of F = mean_n Gamma_{y_n} CE(mlp(x_n), y_n) for one run.
    Per-sample quantities are kept as separate (N,) columns: elementwise over the samples,
    they vectorise; an (N, C) array would be reduced along its C-wide minor axis."""
    W1, b1 = p.W1, p.b1
    N, D = x_NxD.shape
    C = p.W2.shape[1]
    x, y = _padded(x_NxD, y_N)
    V, vb = _differences(p)
    delta = [None] + _delta_columns(p, V, vb, x)  # delta_0 = 0
    dtype = delta[1].dtype
    is_y = [y == c for c in range(C)]
    w_N = sum(jnp.where(is_y[c], gamma_C[c], 0) for c in range(C))  # Gamma_{y_n} (0: padding)
    m = functools.reduce(jnp.maximum, delta[1:], jnp.zeros_like(delta[1]))
    # d clipped to [log(tiny), 0]: XLA may recompute the differences in each consumer with sums in
    # another order (fast-math), so the maximum's own d can come out as +rounding (7e3 at logits
    # ~1e12 in float32: exp -> inf, a false divergence); the clip changes nothing rounding keeps
    d = [jnp.clip((0 if c == 0 else delta[c]) - m, _LOG_TINY[dtype], 0) for c in range(C)]
    e = [jnp.exp(dc) for dc in d]
    s = sum(e)
    ce_N = jnp.log(s) - sum(jnp.where(is_y[c], d[c], 0) for c in range(C))
    F = jnp.sum(w_N * ce_N) / N
    # dF/ddelta_c = Gamma_y (softmax_c - [y = c]) / N, c >= 1, ending in a division: XLA then
    # stores g rather than recomputing it in pass 2 for every hidden unit (measured ~15% faster)
    g = [w_N * (e[c] - jnp.where(is_y[c], s, 0)) / (N * s) for c in range(1, C)]

    z = _pre_activation(W1, b1, x, transposed=False)  # (N, H), recomputed: never stored
    on = z > 0
    h = jnp.where(on, z, 0)
    dh = sum(g[k][:, None] * V[k][None, :] for k in range(C - 1))
    dz = jnp.where(on, dh, 0)
    sums = _sum([h * gk[:, None] for gk in g] + [dz] + [dz * x[:, j][:, None] for j in range(D)], axis=0)
    dV, db2 = sums[:C - 1], _sum(g, axis=0)
    grads = MLPArrays(W1=jnp.stack(sums[C:], axis=0), b1=sums[C - 1],
                      W2=jnp.stack([-functools.reduce(jnp.add, dV)] + dV, axis=-1),
                      b2=jnp.stack([-functools.reduce(jnp.add, db2)] + db2))
    return F, grads
