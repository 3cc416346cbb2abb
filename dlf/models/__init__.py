"""Models chosen by `model.name`, behind one engine interface:
init(model, key, x) -> (params, model_state), apply(params, model_state, x, train) -> (logits, model_state)."""
from __future__ import annotations

from functools import partial

import jax.numpy as jnp

from dlf.models import cifar
from dlf.models.mlp import MLP
from dlf.models.myrtle import Myrtle
from dlf.models.wrn import WideResNet

COMPUTE_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


def build(cfg, num_classes: int, precision: str = "float32"):
    """A Flax module for a ModelConfig; `precision` sets the compute dtype of the conv nets."""
    dtype = COMPUTE_DTYPES[precision]
    if cfg.name == "mlp":
        return MLP(width=cfg.width, num_classes=num_classes, init_scheme=cfg.init)
    if cfg.name == "myrtle":
        return Myrtle(depth=cfg.depth, width=cfg.width, num_classes=num_classes,
                      parameterization=cfg.parameterization, dtype=dtype)
    if cfg.name == "wrn":
        return WideResNet(depth=cfg.depth, widen=cfg.widen, num_classes=num_classes, norm=cfg.norm, dtype=dtype)
    raise ValueError(f"model.name={cfg.name!r} is not allowed; choose one of: mlp, myrtle, wrn")


def interface(model):
    """(init, apply) of the engine for a built model (see the module docstring)."""
    if isinstance(model, MLP):
        from dlf.engine import plain_apply

        return (lambda m, key, x: (m.init(key, x)["params"], ()),
                plain_apply(lambda params, x: model.apply({"params": params}, x)))
    return cifar.init, partial(_apply, model)


def _apply(model, params, model_state, x, train):
    return cifar.apply(model, params, model_state or {}, x, train)
