"""One-hidden-layer ReLU network of the spiral experiments (SPEC 2)."""
from __future__ import annotations

import flax.linen as nn
import jax

# name -> (kernel init, bias init)  [decision, SPEC 2]
INITS = {
    # neural-tangents "standard" init used by the paper: W ~ N(0, 1/fan_in) (not truncated), b = 0.
    "lecun": (jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"), jax.nn.initializers.zeros),
    # the authors' updated notebook: glorot-normal W (JAX's: truncated at 2 std, variance
    # 2/(fan_in+fan_out)), b ~ N(0, 0.01^2).
    "glorot": (jax.nn.initializers.glorot_normal(), jax.nn.initializers.normal(0.01)),
}


class MLP(nn.Module):
    width: int
    num_classes: int
    init_scheme: str = "lecun"

    @nn.compact
    def __call__(self, x_BxD):
        w_init, b_init = INITS[self.init_scheme]
        h = nn.relu(nn.Dense(self.width, kernel_init=w_init, bias_init=b_init, dtype=x_BxD.dtype,
                             param_dtype=x_BxD.dtype)(x_BxD))
        return nn.Dense(self.num_classes, kernel_init=w_init, bias_init=b_init, dtype=x_BxD.dtype,
                        param_dtype=x_BxD.dtype)(h)


def build(cfg, num_classes: int, dtype=None) -> MLP:
    """The registered constructor (dlf.models.MODELS["mlp"]); the data's dtype sets the compute dtype."""
    return MLP(width=cfg.width, num_classes=num_classes, init_scheme=cfg.init)
