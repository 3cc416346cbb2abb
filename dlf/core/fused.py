"""A fused full-batch loss-and-gradient for the one-hidden-layer MLP with dynamical cross-entropy.

The generic engine differentiates the Flax model with `jax.value_and_grad`: on a CPU that is
~25 small kernels per step, each storing (samples, hidden) arrays. Here the same maths is two
passes that never store anything of size (samples, hidden): the pre-activation z = x W1 + b1 is
recomputed inside each pass from the parameters and the (N,) data columns, and each pass is one
variadic `lax.reduce` (several outputs at once), which XLA compiles to one loop nest:

  pass 1, over the hidden axis:  logits_c(n) = sum_h relu(z_nh) W2_hc   (+ b2_c)
  pass 2, over the samples:      dW2_hc = sum_n relu(z_nh) g_nc,  db1_h = sum_n dz_nh,
                                 dW1_dh = sum_n x_nd dz_nh,  dz_nh = [z_nh > 0] sum_c g_nc W2_hc

with g = dF/dlogits = Gamma_y (softmax - onehot) / N.

Only the compiled training chunks get `COMPILER_OPTIONS` (XLA:CPU fast-math, 512-bit vectors, no
YNNPACK reductions): without fast-math LLVM may not re-associate the sums and leaves them scalar
(~10x slower), and YNNPACK's reduce kernels cost more than the whole step on these small arrays.
They are per-compilation options, not process-wide XLA_FLAGS, so initialisation, evaluation and
everything else compile as usual (a seed gives the same initial parameters on either path).
NaN and Inf stay honoured (XLA's fast-math defaults), so the divergence guard works unchanged;
sums and exp/log are re-associated/approximated, so the fused path agrees with the generic one
to rounding (float64: < 1e-12 over 100 steps at lr 1, tested), not bit for bit (BENCHMARKS.md "Fused step").

Applies to: model mlp, loss cross_entropy, full batch, no probes, plain (non-image) inputs. Any
width, class count and input dimension; float32 and float64. The optax update and the divergence
guard stay the engine's (Program.step_with_loss with `loss_grad` set).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_LOG_TINY = {jnp.dtype(t): float(jnp.log(jnp.finfo(t).tiny)) for t in (jnp.float32, jnp.float64)}
COMPILER_OPTIONS = {
    "xla_cpu_enable_fast_math": True,  # lets LLVM vectorise the reductions (re-associates sums)
    "xla_cpu_prefer_vector_width": 512,  # 16 float32 lanes where the CPU has AVX-512
    # library fusions for dots only: with YNNPACK's reduce kernels the step measured ~2.5x slower
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


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


def _logit_columns(params, x_NxD) -> list[jax.Array]:
    """Fused pass 1: the C logit columns, each (N,) (never stores (N, H))."""
    W1, b1 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    W2, b2 = params["Dense_1"]["kernel"], params["Dense_1"]["bias"]
    h_HxN = jnp.maximum(_pre_activation(W1, b1, x_NxD, transposed=True), 0)
    cols = _sum([h_HxN * W2[:, c][:, None] for c in range(W2.shape[1])], axis=0)
    return [col + b2[c] for c, col in enumerate(cols)]


def mlp_logits(params, x_NxD):
    """The MLP's logits (N, C) by fused pass 1."""
    return jnp.stack(_logit_columns(params, x_NxD), axis=-1)


def loss_and_grad(params, x_NxD, y_N, gamma_C) -> tuple[jax.Array, Any]:
    """(F, dF/dparams) of F = mean_n Gamma_{y_n} CE(mlp(x_n), y_n) for one run (Flax MLP params).
    Per-sample quantities are kept as C separate (N,) columns: elementwise over the samples,
    they vectorise; an (N, C) array would be reduced along its 3-wide minor axis."""
    W1, b1 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    W2 = params["Dense_1"]["kernel"]
    N, D = x_NxD.shape
    C = W2.shape[1]
    logits = _logit_columns(params, x_NxD)
    dtype = logits[0].dtype
    is_y = [y_N == c for c in range(C)]
    w_N = sum(jnp.where(is_y[c], gamma_C[c], 0) for c in range(C))  # Gamma_{y_n}, without a gather
    m = functools.reduce(jnp.maximum, logits)
    # d clipped to [log(tiny), 0]: XLA may recompute the logits in each consumer with sums in
    # another order (fast-math), so the maximum's own d can come out as +rounding (7e3 at logits
    # ~1e12 in float32: exp -> inf, a false divergence); the clip changes nothing rounding keeps
    d = [jnp.clip(l - m, _LOG_TINY[dtype], 0) for l in logits]
    e = [jnp.exp(dc) for dc in d]
    s = sum(e)
    ce_N = jnp.log(s) - sum(jnp.where(is_y[c], d[c], 0) for c in range(C))
    F = jnp.mean(w_N * ce_N)
    w_s = w_N / (N * s)
    g = [w_s * e[c] - jnp.where(is_y[c], w_N / N, 0) for c in range(C)]  # dF/dlogit_c, (N,) each

    z = _pre_activation(W1, b1, x_NxD, transposed=False)  # (N, H), recomputed: never stored
    on = z > 0
    h = jnp.where(on, z, 0)
    dh = sum(g[c][:, None] * W2[:, c][None, :] for c in range(C))
    dz = jnp.where(on, dh, 0)
    sums = _sum([h * g[c][:, None] for c in range(C)] + [dz]
                + [dz * x_NxD[:, k][:, None] for k in range(D)], axis=0)
    grads = {"Dense_0": {"kernel": jnp.stack(sums[C + 1:], axis=0), "bias": sums[C]},
             "Dense_1": {"kernel": jnp.stack(sums[:C], axis=-1),
                         "bias": jnp.stack(_sum(g, axis=0))}}
    return F, grads


def applies(cfg) -> tuple[bool, str]:
    """(whether the fused step can train cfg, why not)."""
    from dlf.data import DATASETS

    if cfg.model.name != "mlp":
        return False, f"model.name={cfg.model.name} (fused: mlp only)"
    if cfg.loss != "cross_entropy":
        return False, f"loss={cfg.loss} (fused: cross_entropy only)"
    if cfg.epoch_run:
        return False, "mini-batch run (fused: full batch only)"
    if cfg.probing:
        return False, "probes on (fused: every probe's every=0 only)"
    if DATASETS[cfg.dataset.name].inputs != "vector":
        return False, f"dataset.name={cfg.dataset.name} (fused: plain vector inputs only)"
    return True, ""


def use_fused(cfg, backend: str) -> bool:
    """train.step: fused -> yes (a ConfigError if it cannot); generic -> no; auto -> on CPU when it applies."""
    from dlf.errors import ConfigError

    ok, why = applies(cfg)
    if cfg.train.step == "fused" and not ok:
        raise ConfigError(f"train.step=fused is not allowed with {why}; expected train.step=auto or generic")
    return ok and (cfg.train.step == "fused" or (cfg.train.step == "auto" and backend == "cpu"))


def attach(program):
    """`program` training with the fused gradient, its chunks compiled with COMPILER_OPTIONS."""
    import dataclasses

    return dataclasses.replace(program, loss_grad=loss_and_grad, compiler_options=COMPILER_OPTIONS)
