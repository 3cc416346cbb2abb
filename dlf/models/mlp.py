"""One-hidden-layer network of the spiral experiments (SPEC 2), and its parameters as the fused
step's arrays (dlf.core.fused.MLPArrays; the spec's FusedSupport in dlf.models)."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf.core.fused import MLPArrays

# name -> (kernel init, bias init)  [decision, SPEC 2]
INITS = {
    # W ~ N(0, 1/fan_in) (not truncated), b = 0: neural-tangents' standard parameterisation with
    # W_std = 1, b_std = 0, which the authors' 2021 notebook used (the paper states no init;
    # docs/reference.md)
    "lecun": (jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"), jax.nn.initializers.zeros),
    # the authors' updated notebook: glorot-normal W (JAX's: truncated at 2 std, variance
    # 2/(fan_in+fan_out)), b ~ N(0, 0.01^2).
    "glorot": (jax.nn.initializers.glorot_normal(), jax.nn.initializers.normal(0.01)),
}
TRUNCATED_STD = 0.87962566103423978  # std of a standard normal truncated to (-2, 2) (JAX's constant)


def _unit_truncated_normal(key, shape, dtype=jnp.float32):
    """glorot_normal's draw at unit variance: the same truncated normal, divided by its std only."""
    return jax.random.truncated_normal(key, -2, 2, shape, dtype) / jnp.array(TRUNCATED_STD, dtype)


# ntk parameterisation: name -> (unit-variance kernel init, the preset's std(fan_in, fan_out)); the
# stored kernel times that std is the standard parameterisation's draw for the same key
NTK_INITS = {
    "lecun": (jax.nn.initializers.normal(1.0), lambda fan_in, fan_out: 1.0 / math.sqrt(fan_in)),
    "glorot": (_unit_truncated_normal, lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out))),
}
PARAMETERIZATIONS = ("standard", "ntk")
ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}
# the layers' names are explicit: each layer's init key is derived from its name, so these names
# fix every seed's initial parameters (and every published number)
HIDDEN, OUT = "Dense_0", "Dense_1"


class NTKDense(nn.Module):
    """A dense layer x (std * W) + b with W stored at unit variance (ntk parameterisation). Its
    parameters are `kernel` then `bias`, drawn in nn.Dense's order, so a layer of the same name gets
    the same init keys."""
    features: int
    init_scheme: str
    bias_init: Any
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        w_init, std_of = NTK_INITS[self.init_scheme]
        fan_in = x.shape[-1]
        kernel = self.param("kernel", w_init, (fan_in, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        std = jnp.asarray(std_of(fan_in, self.features), kernel.dtype)
        return jnp.dot(x, kernel * std) + bias


class MLP(nn.Module):
    width: int
    num_classes: int
    init_scheme: str = "lecun"
    activation: str = "relu"
    parameterization: str = "standard"

    def _dense(self, features: int, name: str, x):
        w_init, b_init = INITS[self.init_scheme]
        if self.parameterization == "standard":
            return nn.Dense(features, kernel_init=w_init, bias_init=b_init, dtype=x.dtype, param_dtype=x.dtype,
                            name=name)(x)
        if self.parameterization == "ntk":
            return NTKDense(features, self.init_scheme, b_init, dtype=x.dtype, param_dtype=x.dtype, name=name)(x)
        raise ValueError(f"parameterization={self.parameterization!r}; choose one of {PARAMETERIZATIONS}")

    @nn.compact
    def __call__(self, x_BxD):
        h = ACTIVATIONS[self.activation](self._dense(self.width, HIDDEN, x_BxD))
        return self._dense(self.num_classes, OUT, h)


def build(cfg, num_classes: int, dtype=None) -> MLP:
    """The registered constructor (dlf.models.MODELS["mlp"]); the data's dtype sets the compute dtype."""
    return MLP(width=cfg.width, num_classes=num_classes, init_scheme=cfg.init, activation=cfg.activation,
               parameterization=cfg.parameterization)


def fused_arrays(params) -> MLPArrays:
    """The MLP's parameter tree as the fused step's arrays."""
    return MLPArrays(params[HIDDEN]["kernel"], params[HIDDEN]["bias"], params[OUT]["kernel"], params[OUT]["bias"])


def fused_tree(a: MLPArrays) -> dict:
    """The fused step's arrays (parameters or gradients) as the MLP's parameter tree."""
    return {HIDDEN: {"kernel": a.W1, "bias": a.b1}, OUT: {"kernel": a.W2, "bias": a.b2}}
