"""One-hidden-layer network of the spiral experiments (SPEC 2), and its parameters as the fused
step's arrays (dlf.core.fused.MLPArrays; the spec's FusedSupport in dlf.models)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf.core.fused import MLPArrays

# name -> (kernel init, bias init)  [decision, SPEC 2]
INITS = {
    # W ~ N(0, 1/fan_in) (not truncated), b = 0: neural-tangents' "standard" parameterisation with
    # W_std = 1, b_std = 0 (the paper states no init; docs/reference.md)
    "lecun": (jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"), jax.nn.initializers.zeros),
    # the authors' updated notebook: glorot-normal W (JAX's: truncated at 2 std, variance
    # 2/(fan_in+fan_out)), b ~ N(0, 0.01^2).
    "glorot": (jax.nn.initializers.glorot_normal(), jax.nn.initializers.normal(0.01)),
}
ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}
# the layers' names are explicit: each layer's init key is derived from its name, so these names
# fix every seed's initial parameters (and every published number)
HIDDEN, OUT = "Dense_0", "Dense_1"


class MLP(nn.Module):
    width: int
    num_classes: int
    init_scheme: str = "lecun"
    activation: str = "relu"

    @nn.compact
    def __call__(self, x_BxD):
        w_init, b_init = INITS[self.init_scheme]
        h = ACTIVATIONS[self.activation](nn.Dense(self.width, kernel_init=w_init, bias_init=b_init, dtype=x_BxD.dtype,
                                                  param_dtype=x_BxD.dtype, name=HIDDEN)(x_BxD))
        return nn.Dense(self.num_classes, kernel_init=w_init, bias_init=b_init, dtype=x_BxD.dtype,
                        param_dtype=x_BxD.dtype, name=OUT)(h)


def build(cfg, num_classes: int, dtype=None) -> MLP:
    """The registered constructor (dlf.models.MODELS["mlp"]); the data's dtype sets the compute dtype."""
    return MLP(width=cfg.width, num_classes=num_classes, init_scheme=cfg.init, activation=cfg.activation)


def fused_arrays(params) -> MLPArrays:
    """The MLP's parameter tree as the fused step's arrays."""
    return MLPArrays(params[HIDDEN]["kernel"], params[HIDDEN]["bias"], params[OUT]["kernel"], params[OUT]["bias"])


def fused_tree(a: MLPArrays) -> dict:
    """The fused step's arrays (parameters or gradients) as the MLP's parameter tree."""
    return {HIDDEN: {"kernel": a.W1, "bias": a.b1}, OUT: {"kernel": a.W2, "bias": a.b2}}
