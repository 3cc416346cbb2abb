"""Myrtle convnets of the CIFAR-10 experiment (SPEC 2; Shankar et al. 2020)."""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

W_STD = math.sqrt(2.0)  # He-normal gain, as in the neural-tangents Myrtle definition [decision, SPEC 2]
# depth -> number of [conv3x3 + ReLU] layers before each of the three pooling stages; plus the
# dense readout this makes depth weight layers (neural-tangents' `layer_factor`).
CONVS_PER_STAGE = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}
PARAMETERIZATIONS = ("standard", "ntk")


def param_dtype_for(dtype) -> jnp.dtype:
    """float32 parameters for float32/bfloat16 compute; float64 ones for float64 compute."""
    return jnp.promote_types(dtype, jnp.float32)


class Myrtle(nn.Module):
    """[conv3x3+ReLU] x n1 -> avgpool 2 -> x n2 -> avgpool 2 -> x n3 -> global avgpool -> dense.

    `standard`: W ~ N(0, W_STD^2 / fan_in). `ntk`: W ~ N(0, 1) and the layer computes
    (W_STD / sqrt(fan_in)) * (W x) + b. Biases start at zero and are added unscaled in both, so the
    two share one parameter tree. Convs and pools run in `dtype`; the logits come back as float32
    (or float64 when `dtype` is float64).
    """
    depth: int
    width: int
    num_classes: int
    parameterization: str = "standard"
    dtype: Any = jnp.float32

    def _layer(self, make, x, fan_in: int):
        if self.parameterization == "standard":
            w_init, scale = jax.nn.initializers.variance_scaling(W_STD**2, "fan_in", "normal"), None
        else:
            w_init, scale = jax.nn.initializers.normal(1.0), W_STD / math.sqrt(fan_in)
        if scale is not None:
            x = x * jnp.asarray(scale, x.dtype)  # scale * (W x) == W (scale * x): keeps flax's layers
        return make(kernel_init=w_init, bias_init=jax.nn.initializers.zeros, dtype=self.dtype,
                    param_dtype=param_dtype_for(self.dtype))(x)

    @nn.compact
    def __call__(self, x_BxHxWxC):
        if self.depth not in CONVS_PER_STAGE:
            raise ValueError(f"Myrtle depth={self.depth} is not allowed; choose one of {list(CONVS_PER_STAGE)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization={self.parameterization!r}; choose one of {PARAMETERIZATIONS}")
        conv = functools.partial(nn.Conv, self.width, (3, 3), padding="SAME")
        h = x_BxHxWxC.astype(self.dtype)
        for stage, n_convs in enumerate(CONVS_PER_STAGE[self.depth]):
            if stage > 0:
                h = nn.avg_pool(h, (2, 2), strides=(2, 2))
            for _ in range(n_convs):
                h = nn.relu(self._layer(conv, h, fan_in=9 * h.shape[-1]))
        # 32x32 inputs reach here at 8x8; the original's three 2x2 pools of 8x8 are this mean.
        h = jnp.mean(h, axis=(1, 2))
        logits = self._layer(functools.partial(nn.Dense, self.num_classes), h, fan_in=h.shape[-1])
        return logits.astype(param_dtype_for(self.dtype))


Myrtle5 = functools.partial(Myrtle, depth=5)
Myrtle7 = functools.partial(Myrtle, depth=7)
Myrtle10 = functools.partial(Myrtle, depth=10)


def build(cfg, num_classes: int, dtype=jnp.float32) -> Myrtle:
    """The registered constructor (dlf.models.MODELS["myrtle"])."""
    return Myrtle(depth=cfg.depth, width=cfg.width, num_classes=num_classes,
                  parameterization=cfg.parameterization, dtype=dtype)
